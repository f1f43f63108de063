#!/usr/bin/env python3
"""build_docs.py SOURCE_DIR OUT_DIR [--html] [--man]

Builds the documentation: stages docs/ into OUT_DIR/src beside the reference
and man sources that hdr2rst.py extracts from include/*.h (never committed: the
headers are the one source), copies in the repository files the pages quote
(examples, bench), then runs sphinx-build with -W (warnings are errors):
OUT_DIR/html (the site) and OUT_DIR/man (section 3, one page per public call).
Used by `make docs` and the CMake target "docs". Files are copied only when
they changed, so that Sphinx rebuilds only what did.
"""
import os
import shutil
import subprocess
import sys

# Repository files the pages include (literalinclude), staged under _repo/.
QUOTED = ["examples", "bench/uv_echo.c"]


def copy_if_changed(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.exists(dst):
        with open(src, "rb") as a, open(dst, "rb") as b:
            if a.read() == b.read():
                return
    shutil.copyfile(src, dst)


def copy_tree(src, dst, skip=()):
    for root, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".")]
        for f in files:
            if f.endswith((".pyc", "~")):
                continue
            s = os.path.join(root, f)
            copy_if_changed(s, os.path.join(dst, os.path.relpath(s, src)))


def headers(srcdir):
    inc = os.path.join(srcdir, "include")
    names = sorted(f for f in os.listdir(inc) if f.endswith(".h"))
    # ctrio.h first: its opening comment is the conventions
    names.sort(key=lambda f: (f != "ctrio.h", f))
    return [os.path.join(inc, f) for f in names]


def sphinx_python():
    """The interpreter Sphinx runs on (its script's #! line): Debian's
    python3, which has Debian's matplotlib, whatever python3 is first in PATH."""
    path = shutil.which("sphinx-build")
    with open(path) as f:
        line = f.readline()
    return line[2:].strip().split()[0] if line.startswith("#!/") else sys.executable


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a for a in sys.argv[1:] if a.startswith("--")} or {"--html", "--man"}
    srcdir, outdir = os.path.abspath(args[0]), os.path.abspath(args[1])
    stage = os.path.join(outdir, "src")
    copy_tree(os.path.join(srcdir, "docs"), stage, skip=("tools",))
    for q in QUOTED:
        p = os.path.join(srcdir, q)
        if os.path.isdir(p):
            copy_tree(p, os.path.join(stage, "_repo", q))
        else:
            copy_if_changed(p, os.path.join(stage, "_repo", q))
    subprocess.run([sys.executable, os.path.join(srcdir, "docs", "tools", "hdr2rst.py"), stage]
                   + headers(srcdir), check=True)
    os.makedirs(os.path.join(stage, "_generated"), exist_ok=True)
    subprocess.run([sys.executable, os.path.join(srcdir, "docs", "tools", "md_table.py"),
                    os.path.join(srcdir, "README.md"), "Trio → ctrio",
                    os.path.join(stage, "_generated", "trio_table.rst")] + headers(srcdir),
                   check=True)
    plot = os.path.join(srcdir, "docs", "tools", "bench_plot.py")
    if os.path.exists(plot):
        # make bench tees its output to build/bench-output.txt (Makefile)
        out = os.environ.get("CTRIO_BENCH_OUTPUT",
                             os.path.join(os.path.dirname(outdir), "bench-output.txt"))
        subprocess.run([sphinx_python(), plot, out, stage], check=True)
    common = ["sphinx-build", "-W", "--keep-going", "-q", "-d", os.path.join(outdir, "doctrees")]
    if "--html" in flags:
        subprocess.run(common + ["-b", "html", stage, os.path.join(outdir, "html")], check=True)
    if "--man" in flags:
        subprocess.run(common[:-2] + ["-d", os.path.join(outdir, "doctrees-man"), "-t", "man",
                                      "-b", "man", stage, os.path.join(outdir, "man")], check=True)


if __name__ == "__main__":
    main()
