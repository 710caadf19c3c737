"""Defects found by a second review pass and an outside pass on targets beyond the presets: a
quoted numeric CSV header, `--bpd`'s range warnings and hint, `--out` settings overwritten, a
compare run into a training folder, two sigmas clamped onto one time, lists of grad tensors as
conditional inputs, and a prior whose variance is not ``p_T``'s (VE, ``sigma_max`` too small)."""

from __future__ import annotations

import json
import warnings
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

import scoresde as sd
import solvers
from scoresde.cli import main
from scoresde.cli._likelihood_load import _default_grid, _to_levels, _warn_range_mismatch
from scoresde.cli.likelihood import _check_settings_path
from scoresde.conditional.checks import as_tensor
from scoresde.data import load_array
from scoresde.interop.sigma_lists import times_from_sigmas

# --- data files -----------------------------------------------------------------------------------


def test_a_quoted_numeric_header_is_a_header(tmp_path: Path) -> None:
    # R's write.csv quotes column names, not numbers: '"0","1"' above unquoted rows was read as data.
    path = tmp_path / "r.csv"
    path.write_text('"0","1"\n0.5,1.5\n0.25,2\n')
    assert load_array(path).data.tolist() == [[0.5, 1.5], [0.25, 2.0]]


def test_quoted_and_unquoted_files_read_numbers_alike(tmp_path: Path) -> None:
    # '1_000' was a number in a file with a quote anywhere (Python's float) and refused otherwise.
    quoted, plain = tmp_path / "q.csv", tmp_path / "p.csv"
    quoted.write_text('"x","y"\n1_000,2\n3,4\n')
    plain.write_text("x,y\n1_000,2\n3,4\n")
    for path in (quoted, plain):
        with pytest.raises(ValueError, match="'1_000' is not a number"):
            load_array(path)


def test_quoted_fields_of_a_whitespace_table_lose_their_quotes(tmp_path: Path) -> None:
    path = tmp_path / "q.txt"
    path.write_text('"1" "2"\n"3" "4"\n')
    assert load_array(path).data.tolist() == [[1.0, 2.0], [3.0, 4.0]]


# --- likelihood CLI -------------------------------------------------------------------------------


def test_bpd_on_a_raw_levels_run_does_not_call_its_own_scale_another() -> None:
    # Dark 8-bit images (levels 0..50) get the [0, 255] grid of their own run; the range check
    # then called it "trained on another scale" on every default run.
    rows = torch.randint(0, 51, (100, 1, 4, 4)).double()
    args = Namespace(levels=None, data_range=None)
    _default_grid(args, None, True, 256)
    assert args.data_range == (0.0, 255.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_range_mismatch(rows, args.data_range, "run", from_training_levels=True)
        _warn_range_mismatch(rows, (0.0, 255.0), "run")  # 20% of the range is not another scale
    with pytest.warns(UserWarning, match="another scale"):  # a [0, 1] model read on [0, 255]
        _warn_range_mismatch(torch.rand(100, 2), (0.0, 255.0), "run")


def test_the_hint_for_whole_number_floats_keeps_the_models_range() -> None:
    # It said --data-range=0,255, which also changes the range a [-1, 1] model is evaluated on.
    x = torch.randint(0, 256, (10, 1, 4, 4)).double()
    with pytest.raises(ValueError, match=r"save them as integers .*onto \[-1, 1\], the model's range") as err:
        _to_levels(x, 256, (-1.0, 1.0))
    assert "--data-range=0" not in str(err.value)


def test_out_refuses_to_replace_the_settings_of_another_output(tmp_path: Path) -> None:
    (tmp_path / "r.npy").write_bytes(b"")
    (tmp_path / "r.json").write_text(json.dumps({"versions": {}, "output": "r.npy"}))
    with pytest.raises(ValueError, match=r"holds the settings of .*r\.npy"):
        _check_settings_path(tmp_path / "r.csv")
    _check_settings_path(tmp_path / "r.npy")  # the same output again: its own settings
    (tmp_path / "r.npy").unlink()
    _check_settings_path(tmp_path / "r.csv")  # that output is gone: nothing to lose


# --- compare --------------------------------------------------------------------------------------


def test_compare_refuses_a_training_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A training run's config.json passed for a comparison's; compare then wrote over it (and a
    # later `train --resume` reads OUT/config.json).
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": "eight_gaussians", "steps": 10}))
    common = ["--solvers", "ddim", "--steps", "3", "--seeds", "0", "--n", "64", "--no-progress",
              "--no-plots", "--floor-repeats", "1"]
    assert main(["compare", "--target", "eight_gaussians", "--out", str(run), *common]) == 2
    assert "not a comparison's" in capsys.readouterr().err
    assert json.loads((run / "config.json").read_text()) == {"data": "eight_gaussians", "steps": 10}
    # and a folder of training runs is not "a comparison of several targets"
    parent = tmp_path / "runs"
    (parent / "a").mkdir(parents=True)
    (parent / "a" / "config.json").write_text(json.dumps({"data": "moons"}))
    assert main(["compare", "--target", "eight_gaussians", "--out", str(parent), *common]) == 0
    assert "several targets" not in capsys.readouterr().err


# --- interop --------------------------------------------------------------------------------------


def test_two_sigmas_beyond_one_end_are_named() -> None:
    sde = sd.VESDE()
    hi = float(sde.marginal_coeffs(torch.tensor([sde.T]))[1])
    with pytest.raises(ValueError, match="both lie at or beyond an end"):
        times_from_sigmas(sde, [hi * 1.0008, hi * 1.0003, hi * 0.5, 0.1])
    ts, _ = times_from_sigmas(sde, [hi * 1.0003, hi * 0.5, 0.1])  # one level within the tolerance
    assert float(ts[0]) == pytest.approx(sde.T)


# --- conditional ----------------------------------------------------------------------------------


def test_a_list_of_tensors_that_require_grad_is_read() -> None:
    y = as_tensor([torch.tensor(1.5, requires_grad=True), torch.tensor(2.0)], "y")
    assert y.tolist() == [1.5, 2.0] and not y.requires_grad


# --- a prior of the wrong variance ----------------------------------------------------------------


def _grid9() -> sd.GaussianMixture:
    g = torch.tensor([-20.0, 0.0, 20.0], dtype=torch.float64)
    return sd.GaussianMixture(torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2), 1.0)


def _caught(sde: sd.VESDE, solver: str, **kw: object) -> list[str]:
    mix = _grid9()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        solvers.sample(sde, mix.score_fn(sde), shape=(512, 2), solver=solver, steps=8, seed=0, **kw)
    return [str(w.message) for w in caught if "p_T's variance" in str(w.message)]


def test_a_prior_narrower_than_p_T_warns_for_the_ode_and_names_the_level() -> None:
    # Modes 20 apart (data std 16) under VE with sigma_max = 50: p_T's variance is 1.107 times the
    # prior's; every deterministic solver drew 0.13 into the centre mode for 0.111, with no word.
    (msg,) = _caught(sd.VESDE(), "dpmpp_2m")
    assert "1.11 times the prior's" in msg and "too narrow" in msg and "towards the centre" in msg
    needed = float(msg.split("a noise level of about ")[1].split(" ")[0])
    assert 65 < needed < 80  # sqrt(q/(1-q) r/(1-r)) sigma_max, q = 0.975^2, r = 0.097
    assert _caught(sd.VESDE(sigma_max=needed * 1.02), "dpmpp_2m") == []  # at that level: quiet


def test_a_prior_of_the_right_variance_is_quiet() -> None:
    assert _caught(sd.VESDE(sigma_max=100.0), "dpmpp_2m") == []
    assert _caught(sd.VPSDE(), "dpmpp_2m") == []
    assert _caught(sd.VESDE(), "euler_maruyama") == []  # the reverse SDE forgets it (r^lam^2)


def test_the_prior_variance_is_read_off_its_density() -> None:
    from solvers.prior_match import _isotropic_prior_variance

    assert _isotropic_prior_variance(sd.VESDE(), (3,)) == pytest.approx(2500.0, rel=1e-6)
    assert _isotropic_prior_variance(sd.VPSDE(), (1, 2, 2)) == pytest.approx(1.0, rel=1e-6)

    class NoDensity:
        pass

    assert _isotropic_prior_variance(NoDensity(), (2,)) is None
    assert np.isfinite(_isotropic_prior_variance(sd.SubVPSDE(), (2,)) or np.nan)


# --- plots of more than two coordinates -------------------------------------------------------


def test_axes_are_named_after_the_coordinates_shown() -> None:
    # The labels said x_1 / x_2 whatever dims were drawn.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scoresde import plotting

    sde = sd.VPSDE()
    mix = sd.GaussianMixture(torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]), 0.1)
    r = solvers.sample(sde, mix.score_fn(sde), shape=(64, 3), solver="ddim", steps=4, seed=0,
                       keep_trajectory=True)
    ax = plotting.plot_trajectories(r, dims=(1, 2))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("$x_2$", "$x_3$")
    fig = plotting.plot_snapshots(r, dims=(0, -1))
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("$x_1$", "$x_3$")
    ax = plotting.plot_samples(r.samples, dims=(2, 0))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("$x_3$", "$x_1$")
    plt.close("all")


def test_forward_reverse_of_image_samples_says_images_are_not_drawn() -> None:
    from scoresde.plotting.trajectories import forward_data

    r = solvers.Solution(samples=torch.zeros(4, 3, 4, 4), nfe=1, times=torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="point plots do not draw"):
        forward_data(torch.zeros(4, 3, 4, 4), r)
