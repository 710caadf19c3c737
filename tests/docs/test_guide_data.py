"""docs/guide_data.md: the command-line section runs as written (every `scoresde` line of its
```bash blocks) on the data file its first Python block makes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from scoresde.cli import main

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _blocks(page: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), re.S)


@pytest.mark.slow
def test_guide_data_runs_as_written(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    # The page's Python blocks all run in tests/docs/test_docs_examples.py; here the first one makes
    # the data file, and the command-line section must work on it as written.
    ns: dict[str, object] = {}
    exec(compile(_blocks("guide_data.md", "python")[0], "docs/guide_data.md", "exec"), ns)  # noqa: S102
    out = capsys.readouterr().out
    assert "sigma_max = 13.36" in out  # the page says "about 13.4" and passes --sigma-max 13.4
    commands = [ln for b in _blocks("guide_data.md", "bash") for ln in b.splitlines()
                if ln.startswith("scoresde ")]
    assert len(commands) == 4
    for line in commands:
        assert main(shlex.split(line)[1:]) == 0, line
    assert (tmp_path / "runs/cli/samples/samples.json").is_file()
    assert (tmp_path / "runs/cli/plots/trajectories_ode_heun.png").is_file()
    assert "sigma_max" in (tmp_path / "runs/cli/config.json").read_text()
