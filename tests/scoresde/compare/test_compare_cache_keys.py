"""Cached comparison cells are reused only for the same problem and dtype (an outside pass).

A hand-built `Problem` with the default empty spec shared cell keys with every other such
problem (another score under another name got the first one's numbers), and a float64 run
reused float32 cells. `CombinedMetric` also took a reference of another size than its floors'.
A folder whose `config.json` records other settings is now refused (test_compare_study_pass.py);
these tests delete that file between runs, so that the cells' own keys are what is tested.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

import scoresde as sd
from scoresde import compare
from scoresde.quality import CombinedMetric

KW = dict(steps=[4], seeds=[0], n=200, floor_repeats=2, progress=False, plots=False)


def _hand_built(name: str, scale: float) -> compare.Problem:
    base = compare.Problem.from_target("eight_gaussians", sde="vp")
    return compare.Problem(name, base.sde, lambda x, t: scale * base.score(x, t), base.sample_reference, (2,))


def test_hand_built_problems_under_other_names_get_their_own_cells(tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = compare.run_comparison(_hand_built("model_A", 1.0), ["ddim"], out=tmp_path, **KW)
        (tmp_path / "config.json").unlink()
        second = compare.run_comparison(_hand_built("model_B", 0.5), ["ddim"], out=tmp_path, **KW)
    assert second.computed == 1 and second.reused == 0
    assert second.records[0]["problem"] == "model_B"
    assert second.records[0]["sliced_w2"] != first.records[0]["sliced_w2"]


def test_a_hand_built_problem_without_spec_is_warned_about_with_a_cache(tmp_path) -> None:
    with pytest.warns(UserWarning, match="has no spec"):
        compare.run_comparison(_hand_built("model_A", 1.0), ["ddim"], out=tmp_path, **KW)


def test_float64_runs_do_not_reuse_float32_cells(tmp_path) -> None:
    problem = compare.Problem.from_target("eight_gaussians", sde="vp")
    f32 = compare.run_comparison(problem, ["euler_maruyama"], out=tmp_path, **KW)
    (tmp_path / "config.json").unlink()
    f64 = compare.run_comparison(dataclasses.replace(problem, dtype=torch.float64), ["euler_maruyama"],
                                 out=tmp_path, **KW)
    assert f64.computed == 1 and f64.reused == 0
    assert f64.records[0]["sliced_w2"] != f32.records[0]["sliced_w2"]
    again = compare.run_comparison(dataclasses.replace(problem, dtype=torch.float64), ["euler_maruyama"],
                                   out=tmp_path, **KW)
    assert again.reused == 1


def test_combined_metric_refuses_a_reference_of_another_size() -> None:
    target = sd.targets.eight_gaussians()
    metric = CombinedMetric(target, 100, repeats=2)
    x = target.sample(100, generator=torch.Generator().manual_seed(1)).double()
    with pytest.raises(ValueError, match="reference of n = 100"):
        metric(x, metric.exact_reference(0)[:50])
    assert metric(x, metric.exact_reference(0)) > 0
