"""`scoresde likelihood --checkpoint`: the ODE stops at the earliest time the network was trained
at (its loss's t_min), not below it, and still estimates log p_0."""

from __future__ import annotations

import json

from scoresde.cli import main
from scoresde.likelihood import data_end_time
from scoresde.train import load_model


def test_a_checkpoints_likelihood_starts_where_its_network_was_trained(tmp_path, capsys) -> None:
    # An outside check (three toy models, 3000 steps, VP, 1000 held-out points): the network's
    # score at t = 1e-5, 100x below its training range, was 13-30 times off the exact score, and
    # log p_0 from t_end = 1e-5 read 2e-3 nats lower on sharp_8 than from t_end = 1e-3 (pooled
    # 2.3 standard errors) at more evaluations; with the exact score both ends agree to 1e-6.
    run = tmp_path / "run"
    assert main(["train", "--data", "eight_gaussians", "--steps", "3", "--out", str(run), "--width", "16",
                 "--depth", "1", "--batch-size", "32", "--no-progress"]) == 0
    out = tmp_path / "lp.npy"
    common = ["--n", "16", "--integrator", "rk4", "--steps", "6", "--seed", "2", "--no-progress", "--float64"]
    capsys.readouterr()
    assert main(["likelihood", "--checkpoint", str(run), *common, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    model, sde, config = load_model(run)
    assert config.loss.t_min is None and sde.eps == 1e-3 > data_end_time(sde) == 1e-5
    assert "ODE on [0.001 (the earliest time the network was trained at), 1]" in text
    record = json.loads((tmp_path / "lp.json").read_text())
    assert record["density"] == "data" and record["ode_start"] == 1e-3
    # --eps still asks for log p_eps at the given time.
    assert main(["likelihood", "--checkpoint", str(run), *common, "--eps", "1e-2"]) == 0
    assert "estimating log p_eps (eps=0.01)" in capsys.readouterr().out
