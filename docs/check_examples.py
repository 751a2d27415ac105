"""Run the ``>>>`` examples of the documentation pages as doctests.

Usage, from the repository root::

    .venv/bin/python docs/check_examples.py            # every page under docs/
    .venv/bin/python docs/check_examples.py docs/user-guide/verification.md

Each page's fenced code blocks (```` ```python ````/```` ```pycon ````) that contain ``>>>``
run in order in one namespace, with ``NORMALIZE_WHITESPACE`` and ``ELLIPSIS``; blocks
without ``>>>`` are illustrations and are not run. Exits non-zero when an example fails.
"""

from __future__ import annotations

import doctest
import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
FENCE = re.compile(r"^```(?:python|pycon)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def page_examples(path: Path) -> str:
    """The page's doctest text: its fenced blocks with ``>>>``, one after the other."""
    blocks = [b for b in FENCE.findall(path.read_text(encoding="utf-8")) if ">>>" in b]
    return "\n".join(blocks)


def run(paths: list[Path]) -> int:
    os.chdir(ROOT)  # examples use paths relative to the repository root
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for path in paths:
        text = page_examples(path)
        if not text:
            continue
        name = str(path.relative_to(ROOT))
        test = parser.get_doctest(text, {"__name__": "__docs__"}, name, name, 0)
        result = runner.run(test)
        print(f"{name}: {result.attempted - result.failed}/{result.attempted} examples passed")
    return 1 if runner.failures else 0


if __name__ == "__main__":
    args = [Path(a).resolve() for a in sys.argv[1:]]
    pages = args or sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)
    sys.exit(run(pages))
