# Sphinx configuration for ctrio's documentation. Built by docs/tools/build_docs.py
# (make docs, or the CMake target "docs"), which stages this directory beside the
# reference and man sources it extracts from the headers; warnings are errors.
import json
import os

project = "ctrio"
author = "the ctrio authors"
copyright = "the ctrio authors"
version = release = os.environ.get("CTRIO_VERSION", "")
primary_domain = "c"
highlight_language = "none"  # prose literal blocks; C code says "c"
extensions = []
templates_path = []
exclude_patterns = ["_build", "_generated", "_repo"]  # _generated: included by pages
html_theme = "alabaster"
html_theme_options = {"description": "Trio's structured concurrency in C", "fixed_sidebar": True,
                      "page_width": "1150px"}
html_static_path = ["_static"]
html_css_files = ["ctrio.css"]
html_last_updated_fmt = None
html_copy_source = False
man_make_section_directory = False

if tags.has("man"):  # noqa: F821 (Sphinx defines tags)
    # One page per public call, listed by the extractor.
    root_doc = "man/index"
    include_patterns = ["man/**"]
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "man_pages.json")) as f:
        man_pages = [tuple(m) for m in json.load(f)]
else:
    exclude_patterns += ["man"]
