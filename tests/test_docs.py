"""The user docs hold together: every relative link in README.md and docs/ resolves."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r'\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
FENCE = re.compile(r"```.*?```", re.S)


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), path.read_text(encoding="utf-8"))  # code is not links
    broken = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for match in LINK.finditer(line):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same page
            if not (path.parent / unquote(target.split("#", 1)[0])).exists():
                broken.append(f"{path.relative_to(root)}:{lineno}: {target}")
    return broken


def test_every_relative_link_in_the_docs_resolves():
    files = _markdown_files()
    assert len(files) > 10
    broken = [b for f in files for b in broken_links(f)]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_check_catches_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x")
    page.write_text("[ok](there.md) [url](https://example.org) [gone](missing.md#part)\n```\n[in code](nowhere.md)\n```\n")
    assert [b.rsplit(": ", 1)[1] for b in broken_links(page, tmp_path)] == ["missing.md#part"]
