"""The project's documentation holds together: every relative markdown link points at a file, every
"docs/numerics.md section N" cited in the code names a section that exists, and nothing points at the
DESIGN.md / NUMERICS.md that the repository never had."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

if not (DOCS.is_dir() and (ROOT / "README.md").is_file()):
    pytest.skip("docs/ and README.md are not beside tests/ (the tests were copied out of the source tree)",
                allow_module_level=True)

PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "bench" / "README.md", *sorted(DOCS.glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)


def relative_links(text: str) -> list[str]:
    """The link targets of a markdown text that are paths in the repository (not URLs, not in code)."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", text))
    targets = _INLINE.findall(text) + _REFDEF.findall(text)
    return [t for t in targets if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t) and not t.startswith("#")]


def dangling(page: Path) -> list[str]:
    """The relative links of `page` whose file (the part before any #anchor) does not exist."""
    out = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not (page.parent / path).exists():
            out.append(target)
    return out


def test_the_link_checker_finds_links_and_ignores_urls_and_code(tmp_path):
    (tmp_path / "there.md").write_text("x")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#a-section) [gone](missing.md) ![img](pics/none.png)\n"
        "[web](https://example.com/x.md) [anchor](#top) [mail](mailto:a@b.c) `[code](nowhere.md)`\n"
        "```\n[fenced](nowhere2.md)\n```\n"
        "[ref]: also-missing.md\n"
    )
    assert relative_links(page.read_text()) == ["there.md#a-section", "missing.md", "pics/none.png",
                                                "also-missing.md"]
    assert dangling(page) == ["missing.md", "pics/none.png", "also-missing.md"]


def test_the_documentation_pages_exist():
    names = {p.name for p in DOCS.glob("*.md")}
    assert {"README.md", "design.md", "numerics.md", "loss-landscape.md"} <= names
    assert "docs/README.md" in relative_links((ROOT / "README.md").read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_points_at_a_file(page):
    assert page.is_file(), f"{page.relative_to(ROOT)} is missing"
    assert dangling(page) == [], f"{page.relative_to(ROOT)} links to files that do not exist"


def _sources():
    for folder in ("fastnn", "tests", "bench", "examples", "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".pyx", ".pxd", ".pyi", ".tp", ".md", ".h") \
                    and path.resolve() != Path(__file__).resolve():
                yield path
    yield from (ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "setup.py")


def test_no_reference_to_the_design_and_numerics_files_the_repository_never_had():
    old = re.compile(r"\b(DESIGN|NUMERICS)(\.md\b|\s+[\d\"]|\s+trap)")
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in _sources()
            for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if old.search(line)]
    assert hits == []


def test_cited_numerics_sections_exist():
    numerics = (DOCS / "numerics.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", numerics, re.M))
    assert {"1", "1.1", "1.5", "2", "6.1", "8", "10"} <= sections
    cite = re.compile(r"docs/numerics\.md,?\s+(?:section\s+)?(\d+(?:\.\d+)?)(?:\s*-\s*(\d+(?:\.\d+)?))?")
    cited = {}
    for p in _sources():
        for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for m in cite.finditer(line):
                for number in filter(None, m.groups()):
                    cited.setdefault(number, f"{p.relative_to(ROOT)}:{i}")
    assert len(cited) >= 10   # the code cites the numbered sections
    missing = {n: where for n, where in cited.items() if n not in sections}
    assert missing == {}
