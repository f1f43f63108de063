#!/usr/bin/env python3
"""md_table.py README.md HEADING OUT.rst [HEADER...] -- a Markdown table of the
README, under "## HEADING", as a reST list-table, at build time.

README.md's "Trio -> ctrio" table is the one mapping the project keeps up to
date; the "ctrio for Trio users" page includes it through this instead of a
copy that would drift. `code` becomes ``code``, and a ctrio name documented
in the headers becomes a link to its reference entry.
"""
import re
import sys


def documented(headers):
    names = set()
    for h in headers:
        text = re.sub(r"/\*.*?\*/", "", open(h, encoding="utf-8").read(), flags=re.S)
        for decl in re.findall(r"^CTRIO_API\s[^;]*;", text, re.M):
            m = re.search(r"(\w+)\s*\(", decl)
            if m:
                names.add(m.group(1))
    return names


def cell(md, names):
    out = []
    for k, part in enumerate(re.split(r"(`[^`]*`)", md.replace("\\|", "|"))):
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            code = part[1:-1]
            bare = re.match(r"^(ctrio_\w+)(\(\))?$", code)
            if bare and bare.group(1) in names:
                out.append(f":c:func:`{bare.group(1)}`")
            else:
                out.append("``" + code.replace("``", "` `") + "``")
        else:
            part = re.sub(r"\*\*(.+?)\*\*", r"\1", part)
            out.append(re.sub(r"([\\*_|])", r"\\\1", part))
    s = ""
    for piece in out:  # inline markup must not touch a word character
        if s and piece.startswith((":c:", "``")) and re.search(r"\w$", s):
            s += "\\ "
        elif s and re.match(r"^\w", piece) and s.endswith("`"):
            s += "\\ "
        s += piece
    return s.strip() or "\\-"


def main():
    readme, heading, out, headers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    names = documented(headers)
    lines = open(readme, encoding="utf-8").read().split("\n")
    start = lines.index("## " + heading) + 1
    rows = []
    for ln in lines[start:]:
        if ln.startswith("## "):
            break
        if ln.startswith("|"):
            cells = re.split(r"(?<!\\)\|", ln.strip()[1:-1])
            if all(re.match(r"^\s*:?-+:?\s*$", c) for c in cells):
                continue
            rows.append([cell(c.strip(), names) for c in cells])
        elif rows:
            break
    if not rows:
        sys.exit(f"md_table.py: no table under '## {heading}' in {readme}")
    res = [".. list-table::", "   :header-rows: 1", "   :widths: auto", ""]
    for r in rows:
        res.append("   * - " + r[0])
        res += ["     - " + c for c in r[1:]]
    new = "\n".join(res) + "\n"
    try:
        if open(out, encoding="utf-8").read() == new:
            return
    except FileNotFoundError:
        pass
    with open(out, "w", encoding="utf-8") as f:
        f.write(new)


if __name__ == "__main__":
    main()
