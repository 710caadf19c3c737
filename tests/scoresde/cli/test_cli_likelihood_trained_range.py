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


def test_the_python_likelihood_of_a_trained_model_stops_at_its_training_t_min(tmp_path) -> None:
    import dataclasses

    import torch

    import scoresde as sd
    from scoresde.likelihood import likelihood
    from scoresde.losses import LossConfig
    from scoresde.models import ModelConfig
    from scoresde.train import Trainer, toy_config

    x = sd.targets.eight_gaussians().sample(8, generator=torch.Generator().manual_seed(0))
    config = toy_config("eight_gaussians", steps=2)
    config = dataclasses.replace(config, batch_size=16, model=ModelConfig(net={"width": 16, "depth": 1}),
                                 loss=dataclasses.replace(config.loss, t_min=2e-3))
    trainer = Trainer(config, out_dir=tmp_path / "run", progress=False)
    trainer.fit()
    trainer.close()
    model, sde, _ = load_model(tmp_path / "run")
    for m in (model, trainer.ema.model, trainer.model):
        assert m.min_score_time == 2e-3
        r = likelihood(sde, m.score_fn(sde), x.to(next(m.parameters()).dtype), integrator="rk4", steps=4)
        assert r.density == "data" and r.eps == 2e-3
    # A score without a training range (exact, or a fresh network) keeps t_end = 1e-5.
    assert likelihood(sde, sd.targets.eight_gaussians().score_fn(sde), x, integrator="rk4", steps=4).eps == 1e-5
    fresh = ModelConfig(net={"width": 16, "depth": 1}).build(seed=0)
    assert fresh.min_score_time is None and data_end_time(sde, fresh.score_fn(sde)) == 1e-5
    assert LossConfig().t_min is None
