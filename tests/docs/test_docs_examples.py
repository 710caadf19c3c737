"""Every ```python block in docs/*.md runs as written.

Blocks of one page run in order in one shared namespace, in a fresh temporary directory,
with ``MPLBACKEND=Agg``. A block is skipped only when the line right before its opening
fence is ``<!-- docs-test: skip (reason) -->`` with a non-empty reason; a page is skipped
with ``<!-- docs-test: skip-page (reason) -->``. Use these sparingly (slow or
network-bound examples) and say why. A block that needs an optional extra is marked
``<!-- docs-test: requires (diffusers) -->`` (comma-separated module names): it runs
whenever those modules are installed and is skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import re
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
SKIP = re.compile(r"^\s*<!--\s*docs-test:\s*skip\s*\((.+)\)\s*-->\s*$")
REQUIRES = re.compile(r"^\s*<!--\s*docs-test:\s*requires\s*\((.+)\)\s*-->\s*$")
SKIP_PAGE = re.compile(r"^\s*<!--\s*docs-test:\s*skip-page\s*\((.+)\)\s*-->\s*$", re.MULTILINE)
MALFORMED = re.compile(r"docs-test:(?!\s*(skip|skip-page|requires)\s*\(.+\)\s*-->)")


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    code: str
    skip_reason: str | None
    requires: tuple[str, ...] = ()


def extract_blocks(text: str) -> list[Block]:
    """The ```python blocks of a markdown page, with their skip markers."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2)
        j = i + 1
        while j < len(lines) and not re.match(rf"^{re.escape(indent)}```\s*$", lines[j]):
            j += 1
        if lang == "python":
            prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            skip, req = SKIP.match(prev), REQUIRES.match(prev)
            body = [ln[len(indent):] if ln.startswith(indent) else ln for ln in lines[i + 1:j]]
            mods = tuple(m.strip() for m in req.group(1).split(",")) if req else ()
            blocks.append(Block(i + 1, "\n".join(body) + "\n", skip.group(1) if skip else None, mods))
        i = j + 1
    return blocks


SLOW_PAGES = {"training.md", "comparisons.md"}
"""Pages that train a model or run a full comparison (tens of seconds each on 2 CPU cores)."""


def _pages() -> list:
    pages = sorted(p for p in DOCS.rglob("*.md") if "python" in p.read_text(encoding="utf-8"))
    return [pytest.param(p, id=str(p.relative_to(DOCS)), marks=[pytest.mark.slow] if p.name in SLOW_PAGES else [])
            for p in pages]


def test_extractor_and_markers() -> None:
    page = (
        "text\n```python\nx = 1\n```\n\n<!-- docs-test: skip (downloads weights) -->\n"
        "```python\nraise SystemExit\n```\n```bash\nls\n```\n- item:\n    ```python\n    y = x + 1\n    ```\n"
        "<!-- docs-test: requires (diffusers, k_diffusion) -->\n```python\nz = 2\n```\n"
    )
    blocks = extract_blocks(page)
    assert [b.code for b in blocks] == ["x = 1\n", "raise SystemExit\n", "y = x + 1\n", "z = 2\n"]
    assert [b.skip_reason for b in blocks] == [None, "downloads weights", None, None]
    assert blocks[3].requires == ("diffusers", "k_diffusion")
    assert blocks[0].line == 2
    assert MALFORMED.search("<!-- docs-test: skip -->") and not MALFORMED.search(
        "<!-- docs-test: skip (slow) -->") and not MALFORMED.search("<!-- docs-test: requires (diffusers) -->")


@pytest.mark.parametrize("page", _pages())
def test_docs_page_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = page.read_text(encoding="utf-8")
    bad = MALFORMED.search(text)
    assert bad is None, f"{page.name}: docs-test marker without a reason near offset {bad.start() if bad else 0}"
    if (m := SKIP_PAGE.search(text)) is not None:
        pytest.skip(f"page marked skip-page: {m.group(1)}")
    blocks = extract_blocks(text)
    if not blocks:
        pytest.skip("no python blocks")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    import matplotlib
    import torch

    matplotlib.use("Agg")
    dtype = torch.get_default_dtype()
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        with torch.random.fork_rng(devices=[]):
            for b in blocks:
                if b.skip_reason is not None or not all(importlib.util.find_spec(m) for m in b.requires):
                    continue
                try:
                    exec(compile(b.code, f"{page.name}:{b.line}", "exec"), namespace)  # noqa: S102
                except Exception:
                    pytest.fail(f"{page.relative_to(DOCS)}, block at line {b.line} failed:\n"
                                f"{traceback.format_exc()}", pytrace=False)
    finally:
        torch.set_default_dtype(dtype)
        import matplotlib.pyplot as plt

        plt.close("all")
