#!/usr/bin/env python3
"""check_blocks.py SOURCE_DIR -- every piece of C the pages show is compiled.

The pages (docs/*.rst) show C only through literalinclude of a file that the
build compiles and ctest runs: docs/code/*.c (docs/CMakeLists.txt) or a
repository file the build already compiles (examples/, bench/uv_echo.c, staged
under /_repo/ by build_docs.py). This fails on a C block typed into a page
(.. code-block:: c, or a :: literal block that looks like C), on an include of
anything else, and on an include of a file that does not exist. (The
reference pages are generated from the headers, which the build compiles.)
"""
import os
import re
import sys

C_LIKE = re.compile(r"#include|^\s*[\w*].*[;{]\s*$|^\s*}\s*$", re.M)
QUOTABLE = (re.compile(r"^/code/[\w-]+\.c$"), re.compile(r"^/_repo/(examples/[\w-]+\.[ch]|bench/uv_echo\.c)$"))


def literal_blocks(lines):
    """(line number, directive or '::', language, text) of each block."""
    i = 0
    while i < len(lines):
        ln = lines[i]
        m = re.match(r"^(\s*)\.\. (code-block|code|sourcecode|literalinclude)::\s*(\S*)", ln)
        lit = not m and re.search(r"::\s*$", ln) and not re.match(r"^\s*\.\. ", ln)
        if m or lit:
            ind = len(ln) - len(ln.lstrip())
            j, body = i + 1, []
            while j < len(lines) and (not lines[j].strip() or
                                      len(lines[j]) - len(lines[j].lstrip()) > ind):
                body.append(lines[j])
                j += 1
            if m:
                yield i + 1, m.group(2), m.group(3), "\n".join(body)
            else:
                yield i + 1, "::", "", "\n".join(body)
            i = j
            continue
        i += 1


def main():
    src = sys.argv[1]
    docs = os.path.join(src, "docs")
    errors, includes = [], 0
    for root, dirs, files in os.walk(docs):
        dirs[:] = [d for d in dirs if d not in ("tools", "code", "_build")]
        for f in sorted(files):
            if not f.endswith(".rst"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)
            lines = open(path, encoding="utf-8").read().split("\n")
            for no, kind, arg, body in literal_blocks(lines):
                where = f"{rel}:{no}"
                if kind == "literalinclude":
                    if not any(rx.match(arg) for rx in QUOTABLE):
                        errors.append(f"{where}: includes {arg}: only /code/*.c and "
                                      "/_repo/examples or bench/uv_echo.c are compiled")
                        continue
                    real = os.path.join(docs, arg[1:]) if arg.startswith("/code/") \
                        else os.path.join(src, arg[len("/_repo/"):])
                    if not os.path.exists(real):
                        errors.append(f"{where}: {arg}: no such file")
                    includes += 1
                elif arg.lower() in ("c", "c++", "cpp"):
                    errors.append(f"{where}: a C block typed into the page: put it in "
                                  "docs/code/ and literalinclude it")
                elif arg.lower() not in ("console", "sh", "bash", "shell", "none", "text") \
                        and C_LIKE.search("\n".join(l for l in body.split("\n") if not l.lstrip().startswith(":"))):
                    errors.append(f"{where}: this block looks like C ({kind} {arg}): put it in "
                                  "docs/code/ and literalinclude it")
    for e in errors:
        print(e)
    print(f"check_blocks: {includes} included files, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
