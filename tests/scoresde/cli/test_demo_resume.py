"""`scoresde demo` goes on from its own interrupted training (an outside pass).

After Ctrl-C the demo said "continue with --resume", an option it does not have, and a rerun
trained from step 0 again.
"""

from __future__ import annotations

import torch

import scoresde as sd
from scoresde.cli import demo
from scoresde.train import Trainer, toy_config
from scoresde.train.signals import TrainingInterrupted


def test_a_rerun_resumes_an_interrupted_training_and_matches_an_uninterrupted_one(tmp_path) -> None:
    target, sde = sd.targets.eight_gaussians(), sd.VPSDE()
    config = toy_config(target.name, sde=sde, steps=30, seed=0, data=target)
    # an interrupted demo run: the same configuration, stopped at step 12 with its checkpoint
    partial = Trainer(config, data=target, out_dir=tmp_path / "a" / "train", overwrite=True, progress=False)
    partial.fit(until=12)
    partial.save()
    partial.close()
    assert (tmp_path / "a" / "train" / "checkpoint.pt").exists()
    resumed = demo._train(target, sde, 30, 0, tmp_path / "a", progress=False)
    fresh = demo._train(target, sde, 30, 0, tmp_path / "b", progress=False)
    assert resumed is not None and fresh is not None
    assert resumed[1]["resumed_from"] == 12 and fresh[1]["resumed_from"] == 0
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    t = torch.full((16,), 0.3)
    torch.testing.assert_close(resumed[0](x, t), fresh[0](x, t), rtol=0, atol=0)


def test_a_run_planned_for_other_steps_is_trained_afresh(tmp_path) -> None:
    target, sde = sd.targets.eight_gaussians(), sd.VPSDE()
    assert demo._train(target, sde, 20, 0, tmp_path, progress=False) is not None
    again = demo._train(target, sde, 20, 0, tmp_path, progress=False)
    other = demo._train(target, sde, 10, 0, tmp_path, progress=False)
    assert again is not None and again[1]["resumed_from"] == 20
    assert other is not None and other[1]["resumed_from"] == 0


def test_the_interruption_message_names_the_demo_rerun() -> None:
    err = TrainingInterrupted(2, 5, "x/checkpoint.pt", "rerun the same demo command to continue from it")
    assert "rerun the same demo command" in str(err) and "--resume" not in str(err)
