#!/usr/bin/env python3
"""hdr2rst.py OUTDIR HEADER... -- the reference and the man pages, from the headers.

The headers are the single source: each public call is documented where it is
declared (include/ctrio.h's rule), so the reference is extracted at build time
and never committed, and cannot drift from the API. For each header this reads
its banners ("/* N. Title */" between rules of dashes), its comments and the
declarations that follow them, and writes:

  OUTDIR/reference/<page>.rst   one page per SPEC group (run, cancellation, ...)
                                with Sphinx's C domain (c:function, c:struct...)
  OUTDIR/reference/index.rst    the toctree of those pages
  OUTDIR/man/<call>.rst         one page per public call, for Sphinx's man builder
  OUTDIR/man/ctrio.rst          ctrio(3): the conventions (ctrio.h's opening comment)
  OUTDIR/man_pages.json         the man builder's list (read by conf.py)

A comment documents the declarations right below it (no blank line between),
as "ctrio_nursery_error_count / ctrio_nursery_error" share one; a comment on
the same line as a declaration is added to it. Comment text is escaped for
reStructuredText (it is prose written for C readers: "*res", "foo_"), and the
names of documented calls become links.
"""
import json
import os
import re
import sys

# Banners map to the SPEC's groups by a keyword of their title; a banner not
# known here gets a page of its own, titled by the banner, so a header that
# grows a section never breaks the build.
PAGES = [  # (page, title, keyword regex on the banner title)
    ("errors", "Conventions and errors", r"^errors"),
    ("run", "The run, tasks, nurseries", r"\brun\b|version"),
    ("cancellation", "Cancellation and time", r"cancel"),
    ("lowlevel", "Low level", r"low level"),
    ("threads", "Threads and tokens", r"thread"),
    ("sync", "Synchronisation and channels", r"synchron"),
    ("sockets", "Sockets", r"^\S*\s*sockets"),
    ("datagrams", "Datagrams: control messages, offload", r"datagram"),
    ("streams", "Streams and servers", r"stream|server"),
    ("testing", "Testing support", r"test"),
    ("tls", "TLS streams", None),  # every banner of ctrio_tls.h
    ("backends", "I/O backends", None),  # by name, below
    ("allcores", "All cores", None),  # by name, below
]
# Declarations that the SPEC groups apart from the banner they sit under.
BY_NAME = [
    (r"^(ctrio_current_backend|CTRIO_BACKEND_\w+)$", "backends"),
    (r"^(ctrio_run_parallel|ctrio_current_run_index|ctrio_cancel_parallel_group|"
     r"ctrio_open_shared_channel|ctrio_tcp_listen_options|ctrio_open_tcp_listeners_with|"
     r"ctrio_serve_tcp_with)$", "allcores"),
]
PAGE_INTRO = {
    "backends": "The I/O backends: every behaviour is the same on each; they differ in "
                "how many system calls they make. See also ``ctrio_config.backend``.",
    "allcores": "One run per core: runs on pinned threads, listeners shared with "
                "SO_REUSEPORT, channels between runs.",
}


def page_of_banner(title, header):
    if os.path.basename(header).startswith("ctrio_tls"):
        return "tls"
    low = title.lower()
    # "trio.testing" first: "Memory streams (trio.testing)" is testing, not streams
    for page, _, rx in sorted(PAGES, key=lambda p: p[0] != "testing"):
        if rx and re.search(rx, low):
            return page
    return re.sub(r"[^a-z0-9]+", "-", low).strip("-")


# ---------------------------------------------------------------- parsing

def items(text):
    """Yield ("comment", text, line_no, trailing) / ("decl", text, line_no) /
    ("blank",) / ("pp", text, line_no) from a header."""
    i, n, line = 0, len(text), 1
    last_code_line = -1
    while i < n:
        c = text[i]
        if c == "\n":
            j = i
            i += 1
            line += 1
            # a blank line: only whitespace up to the next newline
            k = i
            while k < n and text[k] in " \t":
                k += 1
            if k < n and text[k] == "\n":
                yield ("blank",)
            del j
            continue
        if c in " \t":
            i += 1
            continue
        if text.startswith("/*", i):
            end = text.index("*/", i) + 2
            body = text[i:end]
            yield ("comment", body, line, last_code_line == line)
            line += body.count("\n")
            i = end
            continue
        if text.startswith('extern "C"', i):
            i = text.index("{", i) + 1
            continue
        if text.startswith("//", i):
            i = text.index("\n", i)
            continue
        if c == "#":
            end = i
            while True:  # to the end of the line, past continuations and comments
                nl, cm = text.index("\n", end), text.find("/*", end)
                if 0 <= cm < nl:
                    end = text.index("*/", cm) + 2
                    continue
                end = nl
                if text[end - 1] != "\\":
                    break
                end += 1
            body = text[i:end]
            yield ("pp", body, line)
            line += body.count("\n")
            last_code_line = line
            i = end
            continue
        # a declaration: up to ';' at brace depth 0 (comments inside kept)
        start, depth, j = i, 0, i
        while j < n:
            if text.startswith("/*", j):
                j = text.index("*/", j) + 2
                continue
            ch = text[j]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth < 0:  # the closing brace of extern "C"
                    break
            elif ch == ";" and depth == 0:
                break
            j += 1
        body = text[start:j + 1]
        if depth < 0:
            i = j + 1
            continue
        yield ("decl", body, line)
        line += body.count("\n")
        last_code_line = line
        i = j + 1


def comment_lines(body):
    """The comment's text lines, without /* */ and the leading " * "."""
    inner = body[2:-2]
    out = []
    for ln in inner.split("\n"):
        s = ln.rstrip()
        m = re.match(r"^\s*\*(?!/)\s?(.*)$", s)
        out.append(m.group(1) if m else s.strip())
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    return out


def banner_title(body):
    lines = [ln for ln in comment_lines(body)]
    if len(lines) == 1 and not lines[0].startswith("-"):
        return lines[0].strip()
    return None


def strip_comments(code):
    return re.sub(r"/\*.*?\*/", "", code, flags=re.S)


def classify(decl):
    """(kind, name, signature) for a declaration, or None to leave it out."""
    code = " ".join(strip_comments(decl).split())
    if code.startswith('extern "C"'):
        return None
    if "CTRIO_API" in code:
        # attributes are for the compiler, not for Sphinx's C parser
        sig = re.sub(r"__attribute__\s*\(\(.*?\)\)", "", code.replace("CTRIO_API", ""))
        sig = " ".join(sig.split()).rstrip(";").strip()
        m = re.search(r"(\w+)\s*\(", sig)
        return ("function", m.group(1), sig) if m else None
    m = re.match(r"typedef\s+struct\s+(\w+)\s*\{.*\}\s*(\w+)\s*;$", code)
    if m:
        return ("struct", m.group(2), decl.strip())
    m = re.match(r"typedef\s+struct\s+(\w+)\s+(\w+)\s*;$", code)
    if m:
        return ("opaque", m.group(2), code)
    m = re.match(r"typedef\s+.*\(\s*\*\s*(\w+)\s*\)\s*\(.*\)\s*;$", code)
    if m:
        return ("fntype", m.group(1), code)
    m = re.match(r"struct\s+(\w+)\s*\{", code)
    if m:
        return ("structbody", m.group(1), decl.strip())
    return None


def classify_pp(pp):
    m = re.match(r"#\s*define\s+(CTRIO_\w+)(\([^)]*\))?", pp)
    if not m or m.group(1) in ("CTRIO_API", "CTRIO_H", "CTRIO_TLS_H", "CTRIO_TESTING_H"):
        return None
    return ("macro", m.group(1) + (m.group(2) or ""), pp)


def parse(header):
    """A list of entries: dict(page, kind, names, sigs, doc, banner)."""
    text = open(header, encoding="utf-8").read()
    entries, banner, pending = [], None, None
    prev = None
    opening = None
    for it in items(text):
        kind = it[0]
        if kind == "blank":
            pending = None
            prev = it
            continue
        if kind == "comment":
            body, _, trailing = it[1], it[2], it[3]
            title = banner_title(body)
            if opening is None:
                opening = comment_lines(body)
                prev = it
                continue
            if re.match(r"^/\*\s*-{20,}\s*\*/$", body):
                prev = it
                continue
            if title and prev and prev[0] == "comment" and re.match(r"^/\*\s*-{20,}", prev[1]):
                banner = title
                pending = None
                prev = it
                continue
            if trailing:  # the declaration's on its line, if it is documented
                if entries and entries[-1].get("open"):
                    entries[-1]["doc"] += [""] + comment_lines(body)
                prev = it
                continue
            pending = comment_lines(body) if pending is None or prev[0] != "comment" \
                else pending + [""] + comment_lines(body)
            prev = it
            continue
        if kind == "pp":
            c = classify_pp(it[1])
        else:
            c = classify(it[1])
        if c is None:
            if prev and prev[0] != "comment":
                pending = None
            # a comment on this line is this declaration's, not the last
            # entry's ("struct mmsghdr; /* <sys/socket.h> declares it... */"
            # ended up on ctrio_receive_channel_statistics's man page)
            for e in entries:
                e["open"] = False
            prev = it
            continue
        ckind, name, sig = c
        if name.startswith("ctrio__"):
            prev = it
            continue
        page = page_of_banner(banner or "run", header)
        for rx, pg in BY_NAME:
            if re.match(rx, name.split("(")[0]):
                page = pg
        # declarations right under the same comment share its entry
        if prev and prev[0] in ("decl", "pp") and entries and entries[-1].get("open") \
                and entries[-1]["kind"] == ckind and entries[-1]["page"] == page:
            entries[-1]["names"].append(name)
            entries[-1]["sigs"].append(sig)
        else:
            for e in entries:
                e["open"] = False
            entries.append(dict(page=page, kind=ckind, names=[name], sigs=[sig],
                                doc=list(pending or []), header=os.path.basename(header),
                                open=True))
            if ckind == "structbody":  # struct X {...}; after "typedef struct X X;"
                for e in entries[:-1]:
                    if e["kind"] == "opaque" and e["names"][0] == name:
                        e["kind"], e["sigs"] = "struct", [sig]
                        e["doc"] += entries[-1]["doc"]
                        entries.pop()
                        break
        pending = None
        prev = it
    return opening or [], entries


# ---------------------------------------------------------------- writing

ESCAPE = re.compile(r"([\\*`_|\[\]])")


def inline(text, links):
    """Escape prose for reST; documented names become links."""
    out = []
    toks = re.split(r"\b(ctrio_\w+|CTRIO_\w+)\b", text)
    for k, tok in enumerate(toks):
        role = links.get(tok)
        if role:
            # a role must not touch a word character: "\ " separates it
            before = "\\ " if out and re.search(r"[\w`]$", out[-1]) else ""
            after = "\\ " if k + 1 < len(toks) and re.match(r"[\w(`]", toks[k + 1]) else ""
            out.append(f"{before}:c:{role}:`{tok}`{after}")
        else:
            out.append(ESCAPE.sub(r"\\\1", tok))
    return "".join(out)


def prose(lines, links, indent=""):
    """Comment lines to reST: paragraphs, "- " bullets, and lines indented
    past the text (code, tables) as literal blocks."""
    out, para, mode, literal = [], [], None, []
    base = min((len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()), default=0)
    text_indent = base

    def flush():
        nonlocal para, literal
        if para:
            text = inline(" ".join(p.strip() for p in para), links)
            if mode == "bullet":
                out.append(indent + "- " + text)
            else:
                if re.match(r"^([-+*#]|\d+[.)]|\w[.)]\s)", text):
                    text = "\\" + text
                out.append(indent + text)
            out.append("")
        if literal:
            out.append(indent + "::")
            out.append("")
            lb = min(len(ln) - len(ln.lstrip()) for ln in literal if ln.strip())
            for ln in literal:
                out.append(indent + "    " + ln[lb:])
            out.append("")
        para, literal = [], []

    for ln in lines:
        if not ln.strip():
            flush()
            mode, text_indent = None, base
            continue
        ind = len(ln) - len(ln.lstrip())
        if ind >= text_indent + 2 + (2 if mode is None else 0) and (para or literal):
            if para:
                flush()
            literal.append(ln.rstrip())
            continue
        if literal:
            flush()
        if ln.lstrip().startswith("- "):
            flush()
            mode, text_indent = "bullet", ind + 2
            para.append(ln.lstrip()[2:])
            continue
        para.append(ln)
    flush()
    return out


ROLE = {"function": "func", "struct": "struct", "opaque": "struct", "fntype": "type",
        "macro": "macro", "structbody": "struct"}
DIRECTIVE = {"function": "c:function", "struct": "c:struct", "opaque": "c:struct",
             "fntype": "c:type", "macro": "c:macro", "structbody": "c:struct"}


def directive_sig(e, sig, name):
    if e["kind"] == "function":
        return sig
    if e["kind"] == "fntype":
        return sig.replace("typedef ", "", 1).rstrip(";")
    return name


def write(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    new = "\n".join(lines).rstrip() + "\n"
    if os.path.exists(path) and open(path, encoding="utf-8").read() == new:
        return  # keep the time stamp: Sphinx rebuilds only what changed
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


def first_sentence(doc):
    text = " ".join(ln.strip() for ln in doc if ln.strip())
    m = re.match(r"(.+?[.:;])(\s|$)", text)
    s = (m.group(1) if m else text).rstrip(".:;")
    if len(s) > 70:
        s = s[:67].rsplit(" ", 1)[0] + "..."
    return s or "a ctrio call"


def main():
    outdir, headers = sys.argv[1], sys.argv[2:]
    links, all_entries, openings = {}, [], []
    for h in headers:
        opening, entries = parse(h)
        openings.append((os.path.basename(h), opening))
        all_entries += entries
    for e in all_entries:
        for n in e["names"]:
            links[n.split("(")[0]] = ROLE[e["kind"]]
    titles = {p: t for p, t, _ in PAGES}
    order = [p for p, _, _ in PAGES]
    pages = {}
    for e in all_entries:
        pages.setdefault(e["page"], []).append(e)
    # conventions first on the errors page: ctrio.h's opening comment
    names = sorted(pages, key=lambda p: order.index(p) if p in order else len(order))
    index = ["API reference", "=============", "",
             "Extracted from the headers at build time: each call is documented where "
             "it is declared, and this is that text.", "", ".. toctree::", "   :maxdepth: 1", ""]
    for p in names:
        index.append(f"   {p}")
        title = titles.get(p) or p.replace("-", " ").capitalize()
        lines = [title, "=" * len(title), ""]
        if p == "errors":
            for hname, opening in openings:
                if hname == "ctrio.h":
                    lines += prose(opening[1:], links)
        if p in PAGE_INTRO:
            lines += [PAGE_INTRO[p], ""]
        headers_here = sorted({e["header"] for e in pages[p]})
        lines += ["Header: " + ", ".join(f"``<{h}>``" for h in headers_here), ""]
        for e in pages[p]:
            d = DIRECTIVE[e["kind"]]
            sigs = [directive_sig(e, s, n) for s, n in zip(e["sigs"], e["names"])]
            lines.append(f".. {d}:: {sigs[0]}")
            for s in sigs[1:]:
                lines.append(" " * (len(d) + 4) + s)
            lines.append("")
            lines += prose(e["doc"], links, "   ")
            if e["kind"] in ("struct", "fntype") or (e["kind"] == "macro" and "(" in e["names"][0]) \
                    or e["kind"] == "macro":
                if e["kind"] != "opaque" and "private" not in " ".join(e["doc"]).lower():
                    lines += ["   .. code-block:: c", ""]
                    for s in e["sigs"]:
                        lines += ["      " + ln for ln in s.split("\n")]
                    lines.append("")
        write(os.path.join(outdir, "reference", p + ".rst"), lines)
    write(os.path.join(outdir, "reference", "index.rst"), index)

    # man pages: one per public call, and ctrio(3)
    man = []
    for p in names:
        calls = [n for e in pages[p] if e["kind"] == "function" for n in e["names"]]
        for e in pages[p]:
            if e["kind"] != "function":
                continue
            for n in e["names"]:
                lines = [f"{n}(3)", "=" * (len(n) + 3), "", "SYNOPSIS", "--------", "",
                         "::", "", f"    #include <{e['header']}>", ""]
                for s in e["sigs"]:
                    lines.append("    " + s + ";")
                lines += ["", "DESCRIPTION", "-----------", ""]
                lines += prose(e["doc"], {}) or ["(undocumented)", ""]
                see = [c for c in calls if c != n][:12] + ["ctrio"]
                lines += ["SEE ALSO", "--------", "",
                          ", ".join(f"**{c}**\\ (3)" for c in see), ""]
                write(os.path.join(outdir, "man", n + ".rst"), lines)
                man.append([f"man/{n}", n, first_sentence(e["doc"]), [], 3])
    for hname, opening in openings:
        if hname == "ctrio.h":
            lines = ["ctrio(3)", "========", "", "SYNOPSIS", "--------", "", "::", "",
                     "    #include <ctrio.h>", "    cc ... $(pkg-config --cflags --libs ctrio)", "",
                     "DESCRIPTION", "-----------", ""]
            lines += prose(opening, {})
            write(os.path.join(outdir, "man", "ctrio.rst"), lines)
            man.append(["man/ctrio", "ctrio",
                        "Trio's structured concurrency and trio.socket in C", [], 3])
    write(os.path.join(outdir, "man_pages.json"), [json.dumps(man, indent=0)])
    write(os.path.join(outdir, "man", "index.rst"),
          ["Manual pages", "============", "", ".. toctree::", ""] +
          [f"   {m[0][4:]}" for m in man])


if __name__ == "__main__":
    main()
