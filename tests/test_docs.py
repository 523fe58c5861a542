"""The documentation holds together: every relative link in README.md, docs/*.md and
deploy/README.md names a file that exists and, with a #fragment, a heading that file has (as
GitHub makes anchors of headings); the README stays a short first read; the benchmark's results
block is where perf/bench.py writes it; and every section of docs/formats.md the code cites
exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "deploy" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 16 * 1024             # issue 17: a README a newcomer reads in minutes (about 15 KB)

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def prose(text: str) -> str:
    """The text outside fenced code blocks (a `# HTTP 200` line in an example is no heading)."""
    return FENCE.sub("", text)


def anchors(path: Path) -> set[str]:
    """The fragments GitHub gives a Markdown file's headings: lower case, punctuation dropped
    (letters, digits, `_`, `-` and spaces kept), spaces as `-`, repeats numbered -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for title in HEADING.findall(prose(path.read_text())):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(path: Path) -> list[str]:
    return LINK.findall(CODE_SPAN.sub("", prose(path.read_text())))


def test_the_documents_exist():
    names = {p.relative_to(ROOT).as_posix() for p in DOCS}
    assert {"README.md", "docs/design.md", "docs/api.md", "docs/formats.md", "docs/http-contract.md",
            "docs/performance.md", "docs/reliability.md", "docs/operations.md"} <= names, names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(doc):
    broken = []
    for target in links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):         # https:, mailto: ...: not ours to check
            continue
        file_part, _, fragment = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}: no heading makes #{fragment}")
        elif fragment and linked.suffix != ".md":
            broken.append(f"{target}: a fragment of a file that is not Markdown")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_readme_stays_short():
    size = (ROOT / "README.md").stat().st_size
    assert size < README_LIMIT, f"README.md is {size} bytes: move detail to docs/ (limit {README_LIMIT})"


def test_the_readme_names_the_two_commands_and_links_every_doc():
    text = (ROOT / "README.md").read_text()
    assert "make run" in text and "make test" in text
    linked = {t.partition("#")[0] for t in links(ROOT / "README.md")}
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in linked, f"the README does not link docs/{doc.name}"


def test_the_benchmark_results_block_is_where_bench_writes_it():
    """perf/bench.py rewrites what lies between these markers in docs/performance.md (and says
    nothing but a log line if they are missing: this is what notices)."""
    bench = (ROOT / "perf" / "bench.py").read_text()
    assert 'RESULTS_DOC = ROOT / "docs" / "performance.md"' in bench
    text = (ROOT / "docs" / "performance.md").read_text()
    assert text.count("<!-- bench:begin") == 1 and text.count("<!-- bench:end -->") == 1
    assert text.index("<!-- bench:begin") < text.index("<!-- bench:end -->")
    assert "<!-- bench:" not in (ROOT / "README.md").read_text()


def test_every_cited_section_of_the_formats_exists():
    """Code comments cite `docs/formats.md §3a`: each cited section must be a heading there."""
    sections = set(re.findall(r"^## (\d+)\.", (ROOT / "docs" / "formats.md").read_text(), re.M))
    cited = {}
    for folder in ("core", "daemon", "api", "tests", "perf", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            for number in re.findall(r"formats\.md §(\d+)", path.read_text()):
                cited.setdefault(number, path.relative_to(ROOT).as_posix())
    missing = {n: where for n, where in cited.items() if n not in sections}
    assert not missing, f"sections cited but not in docs/formats.md: {missing}"


def test_the_code_cites_the_projects_docs_not_the_reference_files():
    """FORMATS.md, API.md and PITFALLS.md were notes outside the repository, which a fresh clone
    does not have: the code cites docs/formats.md, docs/http-contract.md, docs/libraries.md."""
    stale = re.compile(r"\bFORMATS(\.md)?\b|(?<![\w-])API\.md|\bPITFALLS\b|reference/")
    found = [f"{path.relative_to(ROOT)}:{n}" for folder in ("core", "daemon", "api", "tests", "perf", "scripts")
             for path in sorted((ROOT / folder).rglob("*.py")) if path != Path(__file__).resolve()
             for n, line in enumerate(path.read_text().splitlines(), 1) if stale.search(line)]
    found += [f"{name}:{n}" for name in ("schema.sql", "Makefile", "pyproject.toml")
              for n, line in enumerate((ROOT / name).read_text().splitlines(), 1) if stale.search(line)]
    assert not found, f"cite the docs/ files instead: {found}"
