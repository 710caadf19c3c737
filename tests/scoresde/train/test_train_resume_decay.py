"""Resuming a run with another ``steps`` continues its learning-rate decay without a jump.

The toy recipe decays the learning rate (cosine) from the end of its warm-up to the run's last
step, and the warm-up is 10% of the run. Recomputing that schedule for a new length at resume
time moved the learning rate up: a 60-step run stopped at step 30 (factor 0.63 of ``lr``) and
resumed to 120 steps continued at 0.93, with a warm-up of 12 steps instead of 6. The schedule
now keeps the warm-up and the decay's progress at the resume step and spreads the rest of the
decay over the steps left (`scoresde.train.resume_anchor`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from scoresde.train import LRAnchor, Trainer, load_checkpoint, lr_factor, resume_anchor, toy_config


def _config(steps: int):
    c = toy_config("eight_gaussians", steps=steps)
    model = dataclasses.replace(c.model, net={**c.model.net, "width": 16, "depth": 1})
    return dataclasses.replace(c, model=model, batch_size=32)


def _lr(trainer: Trainer) -> float:
    return float(trainer.optimizer.param_groups[0]["lr"])


def test_resume_to_more_steps_continues_the_decay(tmp_path: Path) -> None:
    first = Trainer(_config(60), out_dir=tmp_path, progress=False)
    first.fit(until=30)
    first.save()
    lr_at_stop = _lr(first)
    resumed = Trainer(_config(120), out_dir=tmp_path, resume=True, progress=False)
    assert resumed.step == 30 and _lr(resumed) == pytest.approx(lr_at_stop, rel=1e-12)
    lrs = [lr_at_stop]
    while resumed.step < 120:
        resumed.train_step()
        lrs.append(_lr(resumed))
    base, o = resumed.config.optim.lr, resumed.config.optim
    # No jump: decreasing throughout, and the first step drops less than the old schedule's did.
    assert all(b <= a * (1 + 1e-12) for a, b in zip(lrs[:-1], lrs[1:], strict=True)), "lr rose after resume"
    assert 0 < lrs[0] - lrs[1] < base * (lr_factor(o, 30, 60) - lr_factor(o, 31, 60))
    assert lrs[-1] == pytest.approx(0.1 * base, rel=1e-9)  # min_lr_ratio at the new last step
    # Halfway through the remaining 90 steps the cosine is halfway from the progress reached.
    p0 = (30 - 6) / (60 - 6)
    p = p0 + (1 - p0) * 45 / 90
    assert lrs[45] == pytest.approx(base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p))), rel=1e-9)
    assert resumed.lr_anchor == LRAnchor(6, 30, p0)
    resumed.save()
    # The anchor is kept in the checkpoint, so a second resume continues the same schedule.
    assert load_checkpoint(tmp_path)["lr_anchor"] == {"warmup": 6, "step": 30, "progress": p0}
    assert lr_factor(o, 75, 120, resumed.lr_anchor) * base == pytest.approx(lrs[45], rel=1e-12)


def test_resume_during_warmup_keeps_the_warmup() -> None:
    o = _config(60).optim
    a = resume_anchor(o, 3, 60, 120)
    assert a == LRAnchor(6, 6, 0.0)  # 6 warm-up steps, as the run started; decay from step 6
    assert [lr_factor(o, s, 120, a) for s in range(6)] == [lr_factor(o, s, 60) for s in range(6)]
    assert lr_factor(o, 119, 120, a) == pytest.approx(0.1, abs=1e-3)


def test_unchanged_length_needs_no_anchor() -> None:
    o = _config(60).optim
    assert resume_anchor(o, 30, 60, 60) is None
    fixed = dataclasses.replace(o, decay_to_end=False, warmup_fraction=None, decay_steps=50)
    assert resume_anchor(fixed, 30, 60, 120) is None  # a schedule that ignores the run length


def test_a_finished_run_extended_stays_at_its_final_rate() -> None:
    o = _config(60).optim
    a = resume_anchor(o, 60, 60, 120)
    assert a is not None and a.progress == 1.0
    assert all(lr_factor(o, s, 120, a) == pytest.approx(0.1) for s in range(60, 120))
