"""Defects a new user met walking through the CLI: checks, exit codes, advice, plot limits.

Each test fails on the code before its fix. Commands run in-process through `scoresde.cli.main`
on tiny inputs, or a command's helper is called directly where a full run would cost seconds.
"""

from __future__ import annotations

import argparse
import errno
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from scoresde.cli import build_parser, cli_warning_text, cli_warnings, main
from scoresde.cli import compare as compare_cmd
from scoresde.cli import likelihood as likelihood_cmd
from scoresde.cli import train as train_cmd
from scoresde.cli.errors import cli_advice, describe
from scoresde.data import suggest_sigma_max
from scoresde.data.scale import spread_sigma_max
from scoresde.plotting import plot_samples, plot_trajectories, square_limits
from scoresde.plotting.extent import prior_inset
from scoresde.schedules import PriorCheck

CENTRE = np.array([20.0, -5.0])


def _ring(n: int = 600, centre: np.ndarray = CENTRE, seed: int = 0) -> np.ndarray:
    """Points on a noisy ring of radius 10 around ``centre`` (the tester's ring5.npy, smaller)."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    pts = 10.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1) + 0.5 * rng.standard_normal((n, 2))
    return (pts + centre).astype(np.float32)


@pytest.fixture
def ring_file(tmp_path: Path) -> Path:
    path = tmp_path / "ring.npy"
    np.save(path, _ring())
    return path


def _inside(pts: np.ndarray, x: tuple[float, float], y: tuple[float, float]) -> float:
    ok = (pts[:, 0] >= x[0]) & (pts[:, 0] <= x[1]) & (pts[:, 1] >= y[0]) & (pts[:, 1] <= y[1])
    return float(ok.mean())


# B1: --sigma-max reaches the recipe's check -------------------------------------------------

def test_train_sigma_max_is_checked_by_the_recipe(ring_file: Path, tmp_path: Path) -> None:
    args = build_parser().parse_args(["train", "--data", str(ring_file), "--sde", "ve", "--sigma-max", "3",
                                      "--out", str(tmp_path / "run")])
    with pytest.warns(UserWarning, match=r"VE sigma_max = 3 is below half"), \
            pytest.warns(UserWarning, match=r"p_T is far from the prior N\(0, 3\^2 I\) of VESDE"):
        config = train_cmd.build_config(args)
    assert config.sde.name == "ve" and config.sde.params == {"sigma_max": 3.0}  # config.json as before
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sigma_max that covers the centred data: no warning
        np.save(tmp_path / "c.npy", _ring(centre=np.zeros(2)))
        ok = build_parser().parse_args(["train", "--data", str(tmp_path / "c.npy"), "--sde", "ve",
                                        "--sigma-max", "30", "--out", str(tmp_path / "run2")])
        assert train_cmd.build_config(ok).sde.params["sigma_max"] == 30.0


def test_train_sigma_max_refused_for_other_sdes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", "--sde", "vp", "--sigma-max", "3", "--out", str(tmp_path / "r")]) == 2
    assert "--sigma-max applies to --sde ve, not vp" in capsys.readouterr().err


# B2: a missing input is a usage error everywhere ---------------------------------------------

@pytest.mark.parametrize("command", [
    ["train", "--steps", "1"],
    ["likelihood", "--target", "ring", "--n", "4"],
])
def test_missing_data_file_exits_2(command: list[str], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / ("ll.csv" if command[0] == "likelihood" else "run")
    code = main([*command, "--data", str(tmp_path / "nope.npy"), "--out", str(out)])
    assert code == 2, capsys.readouterr().err
    assert "nope.npy" in capsys.readouterr().err


def test_missing_config_exits_2_but_vanished_output_exits_1(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", str(tmp_path / "nope.json"), "--out", str(tmp_path / "r")]) == 2
    assert "nope.json" in capsys.readouterr().err
    out = tmp_path / "run"
    gone = FileNotFoundError(errno.ENOENT, "No such file or directory", str(out / ".checkpoint.pt.abcd1234.tmp"))
    assert describe(gone, [out])[0] == 1  # written under --out: a runtime failure
    assert describe(gone)[0] == 2
    beside = FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / ".ll.csv.abcd1234.tmp"))
    assert describe(beside, [tmp_path / "ll.csv"])[0] == 1  # the temporary file of an --out file
    assert describe(OSError(errno.ENOSPC, "No space left on device", "x"), [out])[0] == 1


# F1: plot limits follow the data ---------------------------------------------------------

def test_square_limits_centre_on_off_centre_data() -> None:
    pts = _ring()
    (x_lo, x_hi), (y_lo, y_hi) = square_limits(pts)
    assert x_hi - x_lo == pytest.approx(y_hi - y_lo)  # square
    assert _inside(pts, (x_lo, x_hi), (y_lo, y_hi)) >= 0.99
    centre = np.array([(x_lo + x_hi) / 2, (y_lo + y_hi) / 2])
    assert np.abs(centre - CENTRE).max() < 1.0
    assert x_hi - x_lo < 2 * 10.6 * 1.2  # the ring fills the panel: about its diameter plus the pad


def test_square_limits_keep_centred_data_on_the_origin() -> None:
    pts = _ring(centre=np.zeros(2))
    (x_lo, x_hi), (y_lo, y_hi) = square_limits(pts)
    assert (x_lo, y_lo) == (-x_hi, -y_hi) and x_hi == y_hi  # symmetric about 0, as before
    assert _inside(pts, (x_lo, x_hi), (y_lo, y_hi)) >= 0.99
    assert 10.0 < x_hi < 10.6 * 1.2


def test_plots_show_off_centre_samples_and_accept_old_limits() -> None:
    pts = _ring()
    ax = plot_samples(pts)
    assert _inside(pts, ax.get_xlim(), ax.get_ylim()) >= 0.99
    ax = plot_samples(pts, lims=(-40.0, 40.0))  # a user's (lo, hi) still means both axes
    assert ax.get_xlim() == (-40.0, 40.0) and ax.get_ylim() == (-40.0, 40.0)


def test_prior_inset_avoids_the_data() -> None:
    rng = np.random.default_rng(0)
    data = np.column_stack([rng.uniform(5, 9.5, 500), rng.uniform(-9.5, -5, 500)])  # lower right
    lims = ((-10.0, 10.0), (-10.0, 10.0))
    prior = 200.0 * rng.standard_normal((500, 2))
    ax = plot_samples(data, lims=lims)
    ins = prior_inset(ax, prior, lims, avoid=data)
    assert ins is not None
    ax.figure.canvas.draw()
    a, b = ax.get_position(), ins.get_position()  # figure fractions -> fractions of the panel
    x0, y0, w, h = (b.x0 - a.x0) / a.width, (b.y0 - a.y0) / a.height, b.width / a.width, b.height / a.height
    fx = (data[:, 0] + 10) / 20
    fy = (data[:, 1] + 10) / 20
    covered = (fx >= x0) & (fx <= x0 + w) & (fy >= y0) & (fy <= y0 + h)
    assert not covered.any()


def test_trajectories_of_off_centre_data_are_in_view() -> None:
    data_end = _ring(200)
    prior_end = 60.0 * np.random.default_rng(1).standard_normal((200, 2))
    t = np.linspace(1.0, 1e-3, 5)
    frames = np.stack([prior_end + (data_end - prior_end) * (1 - ti) for ti in t])
    ax = plot_trajectories(frames, t, n_paths=8)
    assert _inside(data_end.astype(np.float64), ax.get_xlim(), ax.get_ylim()) >= 0.99
    assert ax.get_xlim()[0] > 0  # centred on the data, not on the origin


# F2: prior-mismatch wording and CLI warnings ----------------------------------------------

def test_prior_message_says_root_mean_square_and_cli_gives_cli_advice() -> None:
    text = PriorCheck(0.0066, 1.0, 1.0, 17.58, 4e-5, 0.0067, False).message()
    assert "root-mean-square 17.58" in text and "about the origin" in text and "data of std" not in text
    cli = cli_warning_text(text)
    assert "prior='matched'" not in cli and "scoresde train" in cli and "centre" in cli


def test_cli_warnings_have_no_source_line(capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings(), cli_warnings("train"):
        warnings.simplefilter("always")  # whatever filters the test run was given (-W ignore)
        warnings.warn_explicit("careful", UserWarning, __file__, 1)
        warnings.warn_explicit("VE sigma_max = 3 is below half ... Use VESDE(sigma_max=27.8) (see docs)",
                               UserWarning, __file__, 2)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "scoresde train: warning: careful"
    assert "Use --sigma-max 27.8 (see docs)" in lines[1] and len(lines) == 2


# F3: suggest_sigma_max and off-centre data -----------------------------------------------

def test_suggest_sigma_max_warns_for_off_centre_data() -> None:
    pts = _ring()
    with pytest.warns(UserWarning, match="off-centre"):
        sm = suggest_sigma_max(pts)
    far = float(np.linalg.norm(pts.astype(np.float64), axis=1).max())
    spread = spread_sigma_max(torch.from_numpy(pts.astype(np.float64)))
    assert sm == pytest.approx(max(far, spread), rel=1e-6)  # the origin counts as a point
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        centred = _ring(centre=np.zeros(2))
        d = np.linalg.norm(centred[:, None].astype(np.float64) - centred[None], axis=-1).max()
        spread = spread_sigma_max(torch.from_numpy(centred.astype(np.float64)))
        assert suggest_sigma_max(centred) == pytest.approx(max(d, spread), rel=1e-6)  # technique 1, or p_T's variance
        suggest_sigma_max(pts, warn=False)


# F4: CLI advice in CLI messages ------------------------------------------------------------

def test_cli_advice_drops_python_arguments() -> None:
    assert cli_advice("exists; resume it (resume=True / --resume), pass overwrite=True (--overwrite), or x",
                      "train") == "exists; resume it (--resume), pass --overwrite, or x"
    assert cli_advice("checkpoint written to c.pt; continue with --resume (resume=True)", "train") \
        == "checkpoint written to c.pt; continue with --resume"
    assert cli_advice("Pass the training data again: --data PATH on the command line, data=... in Python",
                      "sample").endswith("again: --data PATH")
    hint = "truncated; intact older checkpoints: a.pt, b.pt (resume from one with --resume a.pt)"
    assert cli_advice(hint, "sample").endswith("(use one with --checkpoint a.pt)")
    assert cli_advice(hint, "train") == hint


def test_train_into_a_run_gives_cli_advice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"x")
    assert main(["train", "--out", str(out), "--steps", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and "=True" not in err


# F5: compare on an image checkpoint ---------------------------------------------------------

def test_compare_refuses_image_checkpoints_up_front() -> None:
    compare_cmd._check_vector_data(SimpleNamespace(data_shape=(2,)), "runs/toy")
    with pytest.raises(ValueError, match=r"images of shape 1x8x8.*scoresde likelihood --checkpoint runs/img"):
        compare_cmd._check_vector_data(SimpleNamespace(data_shape=(1, 8, 8)), "runs/img")


# F7: likelihood names the model and the data on a shape mismatch ---------------------------

def test_likelihood_names_model_and_data_on_shape_mismatch(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d3.npy"
    np.save(path, np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32))
    assert main(["likelihood", "--target", "eight_gaussians", "--data", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"--data {path}" in err and "(3,)" in err and "the target eight_gaussians" in err and "(2,)" in err


# F8: negative bits/dim -------------------------------------------------------------------

def test_negative_bits_per_dim_warns_not_converged(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(integrator="rk4", divergence="hutchinson")
    likelihood_cmd._warn_bpd(-3.8053, args)
    err = capsys.readouterr().err
    assert "not converged" in err and "--integrator dopri5" in err and "--steps" in err
    likelihood_cmd._warn_bpd(1.2, args)
    assert capsys.readouterr().err == ""


# F9: an interrupted compare says how to resume ----------------------------------------------

def test_interrupted_compare_says_rerun_to_resume(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from scoresde import compare

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "run_comparison", interrupted)
    code = main(["compare", "--target", "ring", "--solvers", "ode_heun", "--steps", "4", "--seeds", "0",
                 "--n", "16", "--out", str(tmp_path / "c"), "--no-progress", "--no-plots"])
    assert code == 130
    # Interrupted before any cell finished: nothing to resume (test_compare_interrupt_message.py
    # has the message with kept cells).
    assert "interrupted before any cell finished: nothing was kept" in capsys.readouterr().err


# F10: --steps ----------------------------------------------------------------------------

@pytest.mark.parametrize("steps", ["-3", "0"])
def test_train_steps_message_is_consistent(steps: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--steps", steps, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"--steps must be >= 1 for a new run, got {steps}" in err
    assert "0 is allowed only with --resume" in err and "integer >= 0" not in err



def test_csv_errors_name_the_file_line_and_column(tmp_path) -> None:
    # Before: numpy's "use `usecols`" for a ragged row, 0-based row/column indexes for a text
    # field, and nothing about ';'-separated tables.
    from scoresde.data.arrays import DataError, load_array

    cases = {
        "rag.csv": ("x,y\n1,2\n3,4,5\n", "line 3 has 3 fields where the first data row has 2"),
        "text.csv": ("x,y,label\n1,2,a\n", "line 2, column 3: 'a' is not a number"),
        "semi.csv": ("x;y\n1;2\n3;4\n", "separated by ';'"),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=re.escape(expected)):
            load_array(tmp_path / name)
    (tmp_path / "nan.csv").write_text("x,y\n1,2\nnan,3\n")
    with pytest.raises(DataError, match=r"first at row index 1, counting from 0"):
        load_array(tmp_path / "nan.csv")


def test_bpd_off_grid_names_the_data_range_and_the_folder_hint() -> None:
    import torch

    from scoresde.cli._likelihood_load import _to_levels

    x = torch.linspace(-1, 1, 256).reshape(-1, 1)  # an image folder's [-1, 1] levels
    with pytest.raises(ValueError, match=r"data span \[-1, 1\].*--data-range=-1,1"):
        _to_levels(x, 256, (0.0, 1.0))
    assert _to_levels(x, 256, (-1.0, 1.0)).tolist() == [[k] for k in range(256)]


def test_ve_recipe_reports_the_off_centre_mismatch_for_the_sigma_max_it_uses() -> None:
    import warnings

    import torch

    import scoresde as sd
    from scoresde.train import toy_config

    x = torch.as_tensor(_ring(centre=np.array([10.0, 10.0])))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        toy_config("ring", sde=sd.VESDE(sigma_max=50.0), steps=10, data=x)
    texts = [str(w.message) for w in caught if "off-centre" in str(w.message)]
    assert len(texts) == 1, texts  # once, for the value in use (not the suggested one)
    kl = float(x.double().pow(2).mean()) / (2 * 50.0**2)
    found = re.search(r"the chosen sigma_max = 50, p_T stays off the prior by about ([0-9.e-]+) nats", texts[0])
    assert found and float(found.group(1)) == pytest.approx(kl, rel=0.1)  # 2000 draws of the data
    assert "probability-flow ODE solvers" in texts[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        toy_config("ring", sde=sd.VESDE(sigma_max=3.0), steps=10, data=x)
    small = [str(w.message) for w in caught if "below half" in str(w.message)]
    assert small and "largest distance among the data points and the origin" in small[0]


@pytest.mark.parametrize("name", ["eight_gaussians", "ring", "grid_25", "two_gaussians"])
def test_the_prior_inset_never_hides_the_samples(name: str) -> None:
    # Under VE the inset took the emptiest corner even when every corner held a mode (11.6% of
    # eight_gaussians' samples, a ring mode in the gallery figure); it now shrinks or gives way
    # to a line of text.
    import scoresde as sd
    import solvers
    from scoresde import plotting as P
    from scoresde.plotting.extent import INSET_MAX_COVERED, INSET_TITLE

    sde = sd.VESDE()
    target = sd.targets.get_target(name)
    res = solvers.sample(sde, target.score_fn(sde), (2000, 2), "euler_maruyama", steps=30, seed=0,
                         keep_trajectory=True, max_frames=8)
    ax = P.plot_trajectories(res)
    ax.figure.canvas.draw()
    data = res.samples.numpy()
    (xl, xh), (yl, yh) = ax.get_xlim(), ax.get_ylim()
    fx, fy = (data[:, 0] - xl) / (xh - xl), (data[:, 1] - yl) / (yh - yl)
    for ins in ax.child_axes:
        a, b = ax.get_position(), ins.get_position()
        x0, y0, w, h = (b.x0 - a.x0) / a.width, (b.y0 - a.y0) / a.height, b.width / a.width, b.height / a.height
        covered = (fx >= x0) & (fx <= x0 + w) & (fy >= y0) & (fy <= y0 + h + INSET_TITLE)
        assert covered.mean() <= INSET_MAX_COVERED
    assert ax.child_axes or any("outside this view" in t.get_text() for t in ax.texts)


def test_suggest_sigma_max_warns_when_the_ode_would_carry_the_offset() -> None:
    # A half circle of radius 3 with its mean at (0, 1.9), 0.82x its spread: suggest_sigma_max
    # (7.27 then; 13.4 now, which also gives the prior p_T's variance) said nothing, and then every probability-flow run from the prior warned that its
    # samples come out shifted (0.19 of a std per coordinate, against the sampler's 0.05).
    rng = np.random.default_rng(0)
    theta = rng.uniform(0.0, np.pi, 3000)
    arc = 3.0 * np.stack([np.cos(theta), np.sin(theta)], axis=1) + rng.normal(0.0, 0.2, (3000, 2))
    with pytest.warns(UserWarning, match=r"0.82x their spread.*shifted by about 0.1 of the data's std"):
        suggest_sigma_max(arc)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        suggest_sigma_max(arc - arc.mean(axis=0))
