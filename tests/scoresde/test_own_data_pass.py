"""Defects found by a researcher bringing their own 2-D data; each test failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scoresde.cli import main
from scoresde.data import DataError, load_data


def test_quoted_csv_fields_and_an_r_style_index_column(tmp_path: Path) -> None:
    # R's write.csv / pandas' QUOTE_NONNUMERIC: the quoted empty header cell kept the row
    # numbers as a data dimension, and quoted numbers were refused as "not a number".
    rows = [(0.12, 0.34), (0.5, 0.6), (-1.5, 2.0)]
    files = {
        "r.csv": '"","x","y"\n' + "".join(f'"{i + 1}",{a},{b}\n' for i, (a, b) in enumerate(rows)),
        "pandas.csv": '"","x","y"\n' + "".join(f"{i},{a},{b}\n" for i, (a, b) in enumerate(rows)),
        "quoted.csv": "".join(f'"{a}","{b}"\n' for a, b in rows),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        data = load_data(tmp_path / name).data
        assert data.tolist() == [list(r) for r in rows], name
    (tmp_path / "bad.csv").write_text('"x","y"\n"1","two"\n')
    with pytest.raises(DataError, match="line 2, column 2: 'two' is not a number"):
        load_data(tmp_path / "bad.csv")


def test_a_constant_column_warns_at_training(tmp_path: Path) -> None:
    from scoresde.train import toy_config

    x = np.random.default_rng(0).normal(size=(400, 3))
    x[:, 2] = 0.0
    np.save(tmp_path / "flat.npy", x)
    with pytest.warns(UserWarning, match=r"constant in coordinate\(s\) 2"):
        toy_config(str(tmp_path / "flat.npy"))


def test_resume_starts_from_the_runs_own_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A run trained with non-recipe settings could not be resumed without --config: the recipe's
    # data and batch size were compared with the checkpoint's and refused.
    np.save(tmp_path / "pts.npy", np.random.default_rng(1).normal(size=(200, 2)))
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "pts.npy"), "--batch-size", "32", "--steps", "2",
                 "--out", str(run), "--no-progress"]) == 0
    assert main(["train", "--out", str(run), "--resume", "--steps", "4", "--no-progress"]) == 0
    assert json.loads((run / "config.json").read_text())["steps"] == 4
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--steps", "5", "--batch-size", "64",
                 "--no-progress"]) == 2  # a changed setting is still refused
    assert "batch_size" in capsys.readouterr().err
