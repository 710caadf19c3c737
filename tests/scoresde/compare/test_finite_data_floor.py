"""The data-vs-data noise floor of a finite data set comes from disjoint subsets of its rows.

Both the reference set and the floor's pairs were drawn with replacement from the file, so two
"independent" reference sets shared rows and the floor read low (spiral of 3000 rows, n = 1000:
sliced W2 8.1 between two draws, 9.9 against fresh samples of the law), making a trained model
look worse than it is, more so as n neared the data's size.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import scoresde as sd
from scoresde import compare
from scoresde.compare.problem import LoadedCheckpoint
from scoresde.compare.scoring import Scorer
from scoresde.data.arrays import ArrayDataset


def _problem(rows: torch.Tensor, tmp_path: Path) -> compare.Problem:
    sde = sd.VPSDE()
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"x")

    def loader(path: object, ema: bool = True) -> LoadedCheckpoint:
        return LoadedCheckpoint(score=lambda x, t: -x, sde=sde, data_name="rows", data=ArrayDataset(rows))

    return compare.Problem.from_checkpoint(ckpt, loader=loader)


def test_reference_sets_have_distinct_rows_and_floor_pairs_are_disjoint(tmp_path: Path) -> None:
    rows = torch.arange(200, dtype=torch.float64).reshape(100, 2)
    problem = _problem(rows, tmp_path)
    ref = problem.sample_reference(80, torch.Generator().manual_seed(0))
    assert torch.unique(ref[:, 0]).numel() == 80  # no row twice
    a, b = problem.sample_reference_pair(50, torch.Generator().manual_seed(1))
    assert set(a[:, 0].tolist()).isdisjoint(b[:, 0].tolist())


def test_the_floor_matches_independent_samples_of_the_law(tmp_path: Path) -> None:
    # 2000 rows of N(0, I) in 2-D; n = 1000: the floor between disjoint halves is the floor
    # between independent samples of the law, with-replacement pairs read about 20% low.
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(2000, 2, generator=g, dtype=torch.float64)
    problem = _problem(rows, tmp_path)
    floor, _ = Scorer(problem, ["sliced_w2"], 1000).floors(repeats=16)["sliced_w2"]
    law = compare.Problem("law", sd.VPSDE(), lambda x, t: -x,
                          lambda n, gen: torch.randn(n, 2, generator=gen, dtype=torch.float64), (2,))
    fresh, fresh_std = Scorer(law, ["sliced_w2"], 1000).floors(repeats=16)["sliced_w2"]
    assert abs(floor - fresh) < 3 * fresh_std / math.sqrt(16) + 0.1 * fresh


def test_a_set_size_above_half_the_rows_warns(tmp_path: Path) -> None:
    problem = _problem(torch.randn(100, 2, dtype=torch.float64), tmp_path)
    with pytest.warns(UserWarning, match="use n <= 50"):
        Scorer(problem, ["sliced_w2"], 60)
