#!/usr/bin/env python3
"""check_site.py SOURCE_DIR OUT_DIR -- build the site, then look at it in a browser.

Builds the HTML site and the man pages (build_docs.py: warnings are errors),
then opens every page in headless chromium and reads back the DOM it rendered:
each page must render (its <h1> and the body text present), and every link
between pages must resolve: the file exists and, for #anchor, an element with
that id is in the rendered target. Also: one man page per public call (a
CTRIO_API function of include/*.h, counted here independently of the
extractor). Exit 0 when all hold; each problem is printed.
"""
import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links, self.h1, self.text = set(), [], 0, 0
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        if tag in ("a", "link") and a.get("href"):
            self.links.append(a["href"])
        if tag == "h1":
            self.h1 += 1
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text += len(data.strip())


def render(chromium, path, profile):
    """The DOM of path after chromium loaded it and ran its scripts."""
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
                        "--virtual-time-budget=2000", "--dump-dom", "file://" + path],
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout


def public_calls(srcdir):
    inc = os.path.join(srcdir, "include")
    names = set()
    for f in os.listdir(inc):
        if f.endswith(".h"):
            text = re.sub(r"/\*.*?\*/", "", open(os.path.join(inc, f)).read(), flags=re.S)
            for decl in re.findall(r"^CTRIO_API\s[^;]*;", text, re.M):
                m = re.search(r"(\w+)\s*\(", decl)
                if m and m.group(1) != "__attribute__":
                    names.add(m.group(1))
    return names


def main():
    srcdir, outdir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    subprocess.run([sys.executable, os.path.join(HERE, "build_docs.py"), srcdir, outdir],
                   check=True)
    problems = []
    calls = public_calls(srcdir)
    man = {f[:-2] for f in os.listdir(os.path.join(outdir, "man")) if f.endswith(".3")}
    for c in sorted(calls - man):
        problems.append(f"man: no page for {c}")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    site = os.path.join(outdir, "html")
    pages = sorted(os.path.join(r, f) for r, _, fs in os.walk(site) for f in fs
                   if f.endswith(".html"))
    doms = {}
    with tempfile.TemporaryDirectory() as profile:
        for p in pages:
            rc, dom = render(chromium, p, profile)
            page = Page()
            page.feed(dom)
            doms[p] = page
            rel = os.path.relpath(p, site)
            if rc != 0 or page.h1 == 0 and rel not in ("genindex.html", "search.html") \
                    or page.text < 200:
                problems.append(f"{rel}: did not render (status {rc}, {page.h1} h1, "
                                f"{page.text} characters of text)")
    nlinks = 0
    for p, page in doms.items():
        for href in page.links:
            u = urllib.parse.urlsplit(href)
            if u.scheme or href.startswith("//") or href.startswith("mailto:"):
                continue  # outside the site
            target = os.path.normpath(os.path.join(os.path.dirname(p),
                                                   urllib.parse.unquote(u.path))) if u.path else p
            nlinks += 1
            rel = os.path.relpath(p, site)
            if not os.path.exists(target):
                problems.append(f"{rel}: broken link {href}")
            elif u.fragment and target in doms and u.fragment not in doms[target].ids:
                problems.append(f"{rel}: {href}: no #{u.fragment} in the page")
    for pr in problems:
        print(pr)
    print(f"check_site: {len(pages)} pages rendered, {nlinks} internal links, "
          f"{len(man)} man pages for {len(calls)} calls, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
