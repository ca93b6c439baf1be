"""Every relative link in the project's markdown points at a file or folder that exists."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

# [text](target) and [text](target "title"); anchors and absolute URLs are not files.
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
DOCS = sorted([*REPO.glob("*.md"), *REPO.glob("docs/*.md"), *REPO.glob("benchmarks/*.md"),
               *REPO.glob("results/*.md")])


def relative_links(text: str) -> list[str]:
    """Return the link targets of `text` that name a file of the repository."""
    targets = [m.group(1).split("#", 1)[0] for m in _LINK.finditer(text)]
    return [t for t in targets if t and not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_link_pattern_finds_relative_targets_only():
    text = ("see [a](notebooks/x.ipynb), [b](https://x.org/y), [c](#claim-1), "
            '[d](docs/A.md#part "title") and [e](mailto:a@b.c)')
    assert relative_links(text) == ["notebooks/x.ipynb", "docs/A.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc):
    missing = [t for t in relative_links(doc.read_text(encoding="utf-8"))
               if not (doc.parent / t).exists()]
    assert not missing, f"{doc.relative_to(REPO)} links to missing files: {missing}"
