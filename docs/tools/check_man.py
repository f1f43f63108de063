#!/usr/bin/env python3
"""check_man.py HEADER... -- every public call's man page says enough.

hdr2rst.py makes one man page per public call from the comment above its
declaration (a group of calls under one comment shares that comment, so
each member's page gets all of it). A comment that is fine beside its
neighbours in the header can be too terse alone: "recv / recv_into: bytes
received, 0 at EOF" told a reader of ctrio_socket_recv(3) nothing of its
errors, its checkpoint or what a cancel leaves (issue #13). This fails, naming
each call, when a page's description
  - has fewer than MIN_WORDS words (a sentence of what it does, one of what
    it returns is already about that many), or
  - says nothing of what a call that returns a value returns: none of
    "return(s)", a -E... code, NULL, true/false.
It reads the headers with hdr2rst.py's own parser, so that what it checks is
what the pages show, and first checks that parser's grouping on a small
header of its own (SELF_TEST).
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hdr2rst  # noqa: E402

MIN_WORDS = 25
RETURNS = re.compile(r"\breturns?\b|-E[A-Z0-9]+\b|\bNULL\b|\btrue\b|\bfalse\b", re.I)


def problems(header):
    _, entries = hdr2rst.parse(header)
    for e in entries:
        if e["kind"] != "function":
            continue
        text = " ".join(ln.strip() for ln in e["doc"])
        words = len(re.findall(r"[A-Za-z0-9_]+", text))
        for name, sig in zip(e["names"], e["sigs"]):
            why = []
            if words < MIN_WORDS:
                why.append(f"{words} words (at least {MIN_WORDS})")
            if not re.match(r"^void\s+\w", sig) and not RETURNS.search(text):
                why.append("no word of what it returns")
            if why:
                yield f"{os.path.basename(header)}: {name}: " + "; ".join(why)


# hdr2rst.py's grouping, checked on a header made for it: a comment on the
# line of a declaration that has no page ("struct mmsghdr; /* ... */") once
# ended up on the man page of the call declared before it.
SELF_TEST = """/* opening */
/* Documented: returns 0. */
CTRIO_API int ctrio_a(void);
struct opaque_thing; /* NOT FOR ctrio_a */
/* Also documented: returns 1. */
CTRIO_API int ctrio_b(void); /* trailing for b */
"""


def self_test():
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".h", delete=False) as f:
        f.write(SELF_TEST)
    try:
        _, entries = hdr2rst.parse(f.name)
    finally:
        os.unlink(f.name)
    docs = {n: " ".join(e["doc"]) for e in entries for n in e["names"]}
    ok = (docs.get("ctrio_a") == "Documented: returns 0." and
          docs.get("ctrio_b", "").endswith("trailing for b"))
    if not ok:
        print(f"check_man: hdr2rst.py puts comments on the wrong page: {docs}")
    return ok


def main():
    if not self_test():
        return 1
    found = [p for h in sys.argv[1:] for p in problems(h)]
    for p in found:
        print(p)
    if found:
        print(f"check_man: {len(found)} calls whose man page says too little: "
              "document them where they are declared")
        return 1
    print("check_man: every call's page has a description and its return value")
    return 0


if __name__ == "__main__":
    sys.exit(main())
