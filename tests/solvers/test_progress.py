"""`solvers.sample(..., progress=True)`: a bar that follows the grid and changes nothing else."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers
from solvers.progress import SamplingProgress


@pytest.mark.parametrize(("solver", "steps", "batch_size"), [
    ("pc", 30, None), ("dpmpp_2m", 12, 7), ("adaptive_sde", 1, None), ("ode_rk45", 1, 9),
])
def test_progress_changes_neither_samples_nor_nfe(solver, steps, batch_size, capsys):
    sde = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(sde)
    kw = dict(shape=(20, 2), solver=solver, steps=steps, seed=3, batch_size=batch_size, dtype=torch.float64)
    plain = solvers.sample(sde, score, **kw)
    shown = solvers.sample(sde, score, progress=True, **kw)
    assert torch.equal(plain.samples, shown.samples) and plain.nfe == shown.nfe
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    chunks = 1 if batch_size is None else -(-20 // batch_size)
    assert bar.startswith(f"{solver}: 100%") and f"{chunks:.2f}/{chunks}" in bar


def test_the_bar_reads_the_fraction_of_the_grid_and_ignores_one_probe_ahead():
    ts = torch.tensor([1.0, 0.5, 0.1, 0.01, 0.001], dtype=torch.float64)  # 4 steps, far from uniform in t
    with SamplingProgress(ts, n_chunks=2, desc="x") as bar:
        score = bar.wrap(lambda x, t: x)
        x = torch.zeros(3, 2)
        score(x, torch.full((3,), 1.0))
        score(x, torch.full((3,), 0.5))
        score(x, torch.full((3,), 0.1))
        assert bar.done == pytest.approx(0.25)  # min of the last two calls: 1 of 4 steps
        score(x, torch.full((3,), 0.001))  # a probe far ahead does not move it past the previous call
        assert bar.done == pytest.approx(0.5)
        score(x, torch.tensor([0.0055, 0.01, 0.3]))  # per-sample times: the sample furthest behind
        assert bar.done == pytest.approx(0.5)
        score(x, torch.full((3,), 0.0055))
        assert bar.done == pytest.approx(0.5)
        score(x, torch.full((3,), 0.0055))  # halfway between grid points 0.01 and 0.001
        assert bar.done == pytest.approx(0.875)
        bar.finish_chunk()
        assert bar.done == 1.0
        score(x, torch.full((3,), 0.5))
        score(x, torch.full((3,), 0.5))
        assert bar.done == pytest.approx(1.25)
        bar.finish_chunk()
        assert bar.done == 2.0 and bar.calls == 9
