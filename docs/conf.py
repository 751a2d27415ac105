"""Sphinx configuration for the xcorrdiff documentation.

Build offline and warning-free (from the repository root)::

    .venv/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

autodoc imports the real package (torch included); nothing is fetched from the network.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

import xcorrdiff  # noqa: E402

# --- project --------------------------------------------------------------------------------

project = "xcorrdiff"
author = "xcorrdiff developers"
copyright = "2026, xcorrdiff developers"
release = xcorrdiff.__version__
version = ".".join(release.split(".")[:2])

# --- extensions -----------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md"]
templates_path = ["_templates"]

# --- autodoc / autosummary / numpydoc -------------------------------------------------------

autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"  # numpydoc renders the types written in the docstrings
autodoc_member_order = "bysource"

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# --- MyST -----------------------------------------------------------------------------------

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# --- HTML -----------------------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = "xcorrdiff"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "installation": []}
html_last_updated_fmt = None
html_show_sourcelink = False

# MathJax is loaded by the reader's browser (from its CDN) when a page is viewed; the build
# itself fetches nothing. Offline, formulas show as their TeX source.
