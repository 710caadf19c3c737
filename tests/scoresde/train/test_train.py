"""Training: bit-exact resume, atomic and verified checkpoints, config checks, EMA, schedule,
learning a known score, and a few steps of the digits U-Net."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.losses import LossConfig
from scoresde.models import ModelConfig
from scoresde.train import (
    EMA,
    CheckpointError,
    OptimConfig,
    TrainConfig,
    Trainer,
    digits_config,
    load_checkpoint,
    load_model,
    lr_factor,
    save_checkpoint,
)


def _config(**kw: object) -> TrainConfig:
    base = dict(
        data="eight_gaussians", steps=40, batch_size=32, log_every=5, ckpt_every=20, device="cpu",
        model=ModelConfig(net={"width": 16, "depth": 1}),
        # Importance-sampled likelihood loss and cosine decay: every random and stateful part.
        loss=LossConfig(weighting="likelihood", importance=True),
        optim=OptimConfig(warmup_steps=10, decay_steps=30, ema_decay=0.9),
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _assert_same_state(a: Trainer, b: Trainer) -> None:
    for x, y in ((a.model, b.model), (a.ema.model, b.ema.model)):
        for (k, v), (_, w) in zip(x.state_dict().items(), y.state_dict().items(), strict=True):
            assert torch.equal(v, w), k  # bit-for-bit
    sa, sb = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    for k in sa:
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[k][name], sb[k][name])
    assert torch.equal(a.generator.get_state(), b.generator.get_state())


def test_resume_after_a_crash_is_bit_exact(tmp_path: Path) -> None:
    full = Trainer(_config(), out_dir=tmp_path / "full", progress=False)
    full.fit()
    # Run B crashes at step 27: the checkpoint of step 20 survives, steps 21..27 are lost.
    crashed = Trainer(_config(), out_dir=tmp_path / "b", progress=False)
    crashed.fit(until=27)
    resumed = Trainer(_config(), out_dir=tmp_path / "b", resume=True, progress=False)
    assert resumed.step == 20
    resumed.fit()
    _assert_same_state(full, resumed)
    # The log of the resumed run has no duplicate lines from the lost steps.
    steps = [r["step"] for r in map(eval_json, (tmp_path / "b" / "metrics.jsonl").read_text().splitlines())]
    assert steps == [r["step"] for r in full.history] == list(range(5, 41, 5))
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]


def eval_json(line: str) -> dict:
    import json

    return json.loads(line)


def test_half_then_resume_half_equals_uninterrupted(tmp_path: Path) -> None:
    full = Trainer(_config(ckpt_every=0), out_dir=tmp_path / "full", progress=False)
    full.fit()
    half = Trainer(_config(ckpt_every=0), out_dir=tmp_path / "h", progress=False)
    half.fit(until=20)
    half.save()
    rest = Trainer(_config(ckpt_every=0), out_dir=tmp_path / "h", resume=True, progress=False)
    rest.fit()
    _assert_same_state(full, rest)
    # Extending a finished run: `steps` is a run-time field and may grow on resume.
    more = Trainer(_config(ckpt_every=0, steps=45), out_dir=tmp_path / "h", resume=True, progress=False)
    more.fit()
    assert more.step == 45


def test_checkpoint_rejects_truncated_corrupt_and_foreign_files(tmp_path: Path) -> None:
    path = save_checkpoint({"step": 3, "w": torch.arange(1000.0)}, tmp_path / "c.pt")
    assert load_checkpoint(path)["step"] == 3
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "trunc.pt")
    flipped = bytearray(data)
    flipped[-50] ^= 0xFF
    (tmp_path / "flip.pt").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "flip.pt")
    (tmp_path / "head.pt").write_bytes(data[:25])
    with pytest.raises(CheckpointError, match="header"):
        load_checkpoint(tmp_path / "head.pt")
    torch.save({"step": 1}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a scoresde checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint({"step": 1}, tmp_path / "c.pt")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temp file left behind


def test_resume_refuses_another_config_without_touching_weights(tmp_path: Path) -> None:
    Trainer(_config(steps=20), out_dir=tmp_path, progress=False).fit()
    other = _config(steps=20, model=ModelConfig(net={"width": 32, "depth": 1}))
    with pytest.raises(CheckpointError, match=r"model\.net\.width"):
        Trainer(other, out_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="optim.lr"):
        Trainer(_config(optim=OptimConfig(lr=1e-4)), out_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(FileExistsError, match="resume"):
        Trainer(_config(), out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Trainer(_config(), out_dir=tmp_path / "empty", resume=True, progress=False)
    # A tampered checkpoint whose config matches but weights do not fit: refused before loading.
    state = load_checkpoint(tmp_path)
    state["model"]["net.inp.weight"] = torch.zeros(3, 3)
    save_checkpoint(state, tmp_path / "checkpoint.pt")
    fresh = Trainer(_config(steps=20), progress=False)
    before = [p.clone() for p in fresh.model.parameters()]
    with pytest.raises(CheckpointError, match="shape mismatch"):
        fresh.resume(tmp_path / "checkpoint.pt")
    assert all(torch.equal(a, b) for a, b in zip(before, fresh.model.parameters(), strict=True))


def test_ema_matches_closed_form_and_schedule() -> None:
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, decay=0.9, warmup=False)
    theta0 = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.fill_(1.0)
    for _ in range(5):
        ema.update()
    # theta_ema = 0.9^5 theta0 + (1 - 0.9^5) * 1 after 5 updates towards a constant.
    torch.testing.assert_close(ema.model.weight, 0.9**5 * theta0 + (1 - 0.9**5))
    assert EMA(net, 0.999).current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    o = OptimConfig(lr=1.0, warmup_steps=10, decay_steps=100, min_lr_ratio=0.1)
    assert lr_factor(o, 0) == pytest.approx(0.1) and lr_factor(o, 9) == pytest.approx(1.0)
    assert lr_factor(o, 60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(o, 500) == pytest.approx(0.1)


def test_config_json_round_trip_and_validation(tmp_path: Path) -> None:
    c = digits_config(steps=10)
    c.to_json(tmp_path / "c.json")
    assert TrainConfig.from_json(tmp_path / "c.json") == c
    with pytest.raises(ValueError, match="unknown TrainConfig"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="unknown SDE"):
        TrainConfig.from_dict({"sde": {"name": "ou"}})
    with pytest.raises(ValueError, match="data_shape"):
        Trainer(_config(model=ModelConfig(data_shape=(3,))), progress=False)


def test_training_learns_the_exact_score_of_a_gaussian() -> None:
    """Data N(mu, s^2 I): the exact score of p_t is known; a short run must get close to it."""
    target = sd.GaussianMixture([[1.0, -0.5]], 0.5)
    sde = sd.VPSDE()
    cfg = TrainConfig(
        data="gaussian", steps=400, batch_size=128, log_every=100, device="cpu",
        model=ModelConfig(sigma_data=0.7, net={"width": 32, "depth": 1}),
        optim=OptimConfig(lr=3e-3, warmup_steps=20, ema_decay=0.98),
    )
    trainer = Trainer(cfg, data=target, progress=False)
    hist = trainer.fit()
    assert hist[-1]["loss"] < hist[0]["loss"]
    g = torch.Generator().manual_seed(0)
    for tv in (0.1, 0.5):
        x = target.sample_marginal(2000, sde, tv, generator=g)
        t = torch.full((2000,), tv)
        exact = target.marginal_score(x, t, sde)
        err = (trainer.score_fn()(x, t) - exact).norm() / exact.norm()
        # A 400-step fit of a 2-D Gaussian score: a relative L2 error above 15% means it did not learn.
        assert float(err) < 0.15, (tv, float(err))


def test_load_model_gives_ema_weights_for_sampling(tmp_path: Path) -> None:
    trainer = Trainer(_config(steps=10), out_dir=tmp_path, progress=False)
    trainer.fit()
    model, sde, config = load_model(tmp_path)
    assert config == trainer.config and type(sde) is sd.VPSDE
    for a, b in zip(model.parameters(), trainer.ema.model.parameters(), strict=True):
        assert torch.equal(a, b)
    raw, _, _ = load_model(tmp_path / "checkpoint.pt", ema=False)
    assert not all(torch.equal(a, b) for a, b in zip(raw.parameters(), model.parameters(), strict=True))
    r = solvers.sample(sde, model.score_fn(sde), (50, 2), "euler_maruyama", steps=10, seed=0)
    assert r.samples.shape == (50, 2) and torch.isfinite(r.samples).all()


def test_divergence_raises_a_clear_error() -> None:
    class NaNData:  # finite, but the loss overflows (NaN data is named as a data fault instead)
        def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
            return torch.full((n, 2), 1e30)

    trainer = Trainer(_config(ckpt_every=0), data=NaNData(), progress=False)
    with pytest.raises(FloatingPointError, match="diverged"):
        trainer.fit()


def test_digits_unet_trains_a_few_steps(tmp_path: Path) -> None:
    cfg = digits_config(steps=3)
    cfg.batch_size, cfg.log_every, cfg.device = 8, 1, "cpu"
    cfg.model.net = {"channels": 8, "channel_mults": (1, 2), "num_res_blocks": 1,
                     "attention_levels": (1,), "groups": 4}
    trainer = Trainer(cfg, out_dir=tmp_path, progress=False)
    hist = trainer.fit()
    assert len(hist) == 3 and all(math.isfinite(h["loss"]) for h in hist)
    model, sde, _ = load_model(tmp_path)
    x = torch.randn(4, 1, 8, 8)
    assert model.score_fn(sde)(x, torch.full((4,), 0.5)).shape == (4, 1, 8, 8)
    data = sd.data.digits()
    assert data.images.shape == (1797, 1, 8, 8)
    assert float(data.images.min()) == -1.0 and float(data.images.max()) == 1.0


def test_eval_hook_is_called_and_logged(tmp_path: Path) -> None:
    calls: list[int] = []

    def evaluate(trainer: Trainer) -> dict[str, float]:
        calls.append(trainer.step)
        return {"score_norm": float(trainer.score_fn()(torch.zeros(2, 2), torch.full((2,), 0.5)).norm())}

    cfg = _config(steps=12, eval_every=4, log_every=6, ckpt_every=0)
    hist = Trainer(cfg, out_dir=tmp_path, eval_fn=evaluate, progress=True).fit()
    assert calls == [4, 8, 12]
    assert [sorted(h) for h in hist if "score_norm" in h][0] == ["score_norm", "step"]
    logged = [eval_json(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [4, 6, 8, 12]
    assert "loss" in logged[-1] and "score_norm" in logged[-1]
