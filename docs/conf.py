"""Sphinx settings of skylake's documentation: Markdown pages (MyST) and numpydoc API pages.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (tests/test_docs.py runs it).
"""

project = "skylake"
author = "skylake developers"
extensions = ["myst_parser", "sphinx.ext.autodoc", "numpydoc"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
numpydoc_show_class_members = False  # the class pages list members through autodoc's :members:
numpydoc_validation_checks = set()  # validation runs in tests/test_house_rules.py, on the converted modules
autodoc_typehints = "none"  # the numpydoc sections give the types
autodoc_member_order = "bysource"
html_theme = "alabaster"
html_title = "skylake"
html_theme_options = {"page_width": "1100px", "sidebar_width": "230px"}
