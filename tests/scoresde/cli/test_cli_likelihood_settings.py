"""`scoresde likelihood --out` records every setting next to the per-point numbers."""

from __future__ import annotations

import json

import numpy as np

from scoresde.cli import main


def test_likelihood_out_writes_a_settings_sidecar(tmp_path, capsys):
    out = tmp_path / "lp.csv"
    code = main(["likelihood", "--target", "two_gaussians", "--n", "64", "--integrator", "rk4",
                 "--steps", "12", "--seed", "3", "--out", str(out), "--no-progress"])
    assert code == 0
    rows = np.loadtxt(out, delimiter=",", skiprows=1)
    assert rows.shape[0] == 64
    record = json.loads((tmp_path / "lp.json").read_text())
    assert record["integrator"] == "rk4" and record["steps"] == 12 and record["seed"] == 3
    assert record["density"] == "data" and record["target"] == "two_gaussians"
    assert record["data_id"]["shape"] == [64, 2] and len(record["data_id"]["sha256"]) == 64
    assert record["nfe"] > 0 and "torch" in record["versions"]
    # A JSON output keeps its own name; the settings go beside it.
    code = main(["likelihood", "--target", "two_gaussians", "--n", "8", "--out", str(tmp_path / "lp2.json"),
                 "--no-progress"])
    assert code == 0 and (tmp_path / "lp2_settings.json").exists()
