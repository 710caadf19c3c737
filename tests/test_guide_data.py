"""docs/guide_data.md and the sigma_max section of docs/sdes.md run as written: every ```python
block in order in one namespace, then every `scoresde` line of the ```bash blocks."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from scoresde.cli import main

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _blocks(page: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), re.S)


def test_sdes_sigma_max_block_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = [b for b in _blocks("sdes.md", "python") if "suggest_sigma_max" in b]
    assert blocks
    ns: dict[str, object] = {}
    for code in blocks:
        exec(compile(code, "docs/sdes.md", "exec"), ns)  # noqa: S102 - the page's own code
    # the checkerboard spans [-a, a]^2 standardised: its diagonal is the largest distance
    assert 3.0 < float(ns["sigma_max"]) < 6.0  # type: ignore[arg-type]


@pytest.mark.slow
def test_guide_data_runs_as_written(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    ns: dict[str, object] = {}
    for code in _blocks("guide_data.md", "python"):
        exec(compile(code, "docs/guide_data.md", "exec"), ns)  # noqa: S102 - the page's own code
    out = capsys.readouterr().out
    assert "sigma_max = 7." in out  # the page says "about 7.3"
    assert "noise floor" in out and "dpmpp_2m" in out
    assert "built-in data set 'ring'" in out  # the mismatch example printed its error
    for name in ("solver_grid.png", "trajectories_euler_maruyama.png", "forward_reverse.png"):
        assert (tmp_path / "runs/mine/plots" / name).stat().st_size > 5000
    commands = [ln for b in _blocks("guide_data.md", "bash") for ln in b.splitlines()
                if ln.startswith("scoresde ")]
    assert len(commands) == 4
    for line in commands:
        assert main(shlex.split(line)[1:]) == 0, line
    assert (tmp_path / "runs/cli/samples/samples.json").is_file()
    assert (tmp_path / "runs/cli/plots/trajectories_ode_heun.png").is_file()
    assert "sigma_max" in (tmp_path / "runs/cli/config.json").read_text()
