"""The README and docs/: the README stays short, every relative link (and anchor) resolves,
and the generated blocks sit where `make readme-status` writes them."""
import re
import shlex
import subprocess

import pytest

from conftest import REPO
from singledir.figures import readme_status as RS
from singledir.stats import beyond_claims as B

PAGES = [REPO / "README.md", REPO / "config" / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans (links there are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def github_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a markdown page (duplicates get -1, -2, ...)."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in re.sub(r"^```.*?^```", "", text, flags=re.M | re.S).splitlines():
        m = re.match(r"#{1,6} (.*)", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_github_anchors_follow_githubs_rules():
    text = "# A `b.c` – d's (e)\n## Same\n## Same\n```\n# not a heading\n```\n"
    assert github_anchors(text) == {"a-bc--ds-e", "same", "same-1"}


def test_readme_is_a_five_minute_read():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move detail to docs/"


def broken_links(page) -> list[str]:
    """The relative links of a markdown page whose file, or whose anchor in it, does not exist."""
    text = page.read_text()
    broken = []
    for target in LINK.findall(_prose(text)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in github_anchors(dest.read_text()):
            broken.append(f"{target}: no heading with that anchor")
    return broken


def test_broken_links_finds_missing_files_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n## Part two\n")
    page = tmp_path / "README.md"
    page.write_text("[ok](docs/a.md#part-two) [self](#top) [web](https://example.org/x#y)\n"
                    "[gone](docs/b.md) [bad anchor](docs/a.md#part-3) `[code](docs/c.md)`\n# Top\n")
    assert broken_links(page) == ["docs/b.md: no such file", "docs/a.md#part-3: no heading with that anchor"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_to_existing_files_and_anchors(page):
    assert broken_links(page) == []


def test_generated_blocks_live_where_make_readme_status_writes_them():
    readme, status = (REPO / "README.md").read_text(), (REPO / "docs" / "status.md").read_text()
    beyond = (REPO / "docs" / "beyond.md").read_text()
    assert status.count(RS.BEGIN) == status.count(RS.END) == 1
    assert readme.count(RS.SUMMARY_BEGIN) == readme.count(RS.SUMMARY_END) == 1
    assert beyond.count(B.BEGIN) == beyond.count(B.END) == 1
    assert RS.BEGIN not in readme and B.BEGIN not in readme  # the long blocks left the README
    # the README's summary is the one the status page's claims table gives
    assert RS.update_readme_summary(readme, status) == readme
    assert "| claims of | reproduced |" in readme


def test_make_readme_status_writes_the_docs_pages():
    proc = subprocess.run(["make", "-n", "-C", str(REPO), "readme-status"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    commands = [shlex.split(line)[1:] for line in proc.stdout.splitlines() if " -m singledir." in line]
    assert commands == [["-m", "singledir.figures.readme_status", "results/claims.md", "docs/status.md", "README.md"],
                        ["-m", "singledir.stats.beyond_claims", "results/claims.csv", "docs/beyond.md"]]


def test_generated_docs_match_the_committed_claims():
    """Where results/claims.md and claims.csv are committed, `make readme-status` changes nothing."""
    proc = subprocess.run(["git", "ls-files", "results/claims.md", "results/claims.csv"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or len(proc.stdout.split()) < 2:
        pytest.skip("results/claims.md and results/claims.csv are not committed: nothing to regenerate from")
    import pandas as pd

    claims_md = (REPO / "results" / "claims.md").read_text()
    assert RS.main([str(REPO / "results" / "claims.md"), str(REPO / "docs" / "status.md"),
                    str(REPO / "README.md"), "--check"]) == 0
    scale = re.search(r"Scale: \*\*([^*]+)\*\*", claims_md).group(1)
    beyond = (REPO / "docs" / "beyond.md").read_text()
    section = B.readme_section(pd.read_csv(REPO / "results" / "claims.csv"), scale)
    assert B.update_readme(beyond, section) == beyond


def test_committed_status_pages_are_what_make_readme_status_writes(tmp_path):
    """The claims.md behind docs/status.md, run through the generator, leaves docs/status.md and the
    README's summary exactly as committed (the link from README.md to docs/status.md included)."""
    status = (REPO / "docs" / "status.md").read_text()
    body = status[status.index(RS.BEGIN) + len(RS.BEGIN):status.index(RS.END)].strip("\n")
    claims = tmp_path / "claims.md"
    claims.write_text(f"# Claims of Morcos et al. (2018), one by one\n\n{body}\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "status.md").write_text(status)
    (tmp_path / "README.md").write_text((REPO / "README.md").read_text())
    args = [str(claims), str(tmp_path / "docs" / "status.md"), str(tmp_path / "README.md")]
    assert RS.main([*args, "--check"]) == 0
