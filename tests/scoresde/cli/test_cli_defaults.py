"""The CLI and the Python API share one set of defaults, and every ``sample`` output records the
settings that produced it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import solvers
from scoresde.cli import main
from scoresde.sde import get_sde
from scoresde.targets import get_target


@pytest.mark.parametrize("solver", ["dpmpp_2m", "euler_maruyama", "ode_heun"])
def test_cli_sample_equals_python_sample_for_the_same_seed(tmp_path: Path, solver: str) -> None:
    out = tmp_path / solver
    assert main(["sample", "--target", "eight_gaussians", "--solver", solver, "--steps", "12",
                 "--n", "64", "--seed", "5", "--out", str(out), "--no-plot"]) == 0
    target, sde = get_target("eight_gaussians"), get_sde("vp")
    ref = solvers.sample(sde, target.score_fn(sde), (64, 2), solver, steps=12, seed=5, dtype=torch.float32)
    # Same defaults, same seed, same arithmetic: identical samples (no tolerance needed).
    np.testing.assert_array_equal(np.load(out / "samples.npy"), ref.samples.numpy())
    side = json.loads((out / "samples.json").read_text())
    assert side["grid"] == solvers.get_solver(solver).grid_for(sde) and side["grid_given"] is False


def test_sample_sidecar_records_every_setting(tmp_path: Path) -> None:
    out = tmp_path / "s"
    assert main(["sample", "--target", "ring", "--sde", "ve", "--solver", "euler_maruyama", "--steps", "7",
                 "--grid", "quadratic", "--lam", "0.5", "--n", "16", "--seed", "3", "--denoise",
                 "--out", str(out), "--no-plot"]) == 0
    side = json.loads((out / "samples.json").read_text())
    assert {k: side[k] for k in ("solver", "steps", "grid", "grid_given", "lam", "seed", "n", "denoise",
                                 "target", "output")} == {
        "solver": "euler_maruyama", "steps": 7, "grid": "quadratic", "grid_given": True, "lam": 0.5,
        "seed": 3, "n": 16, "denoise": "tweedie", "target": "ring", "output": "samples.npy"}
    assert side["sde"]["name"] == "ve" and side["sde"]["params"]["sigma_max"] > 0
    assert side["nfe"] == 8 and side["data_id"] == {"kind": "builtin", "source": "ring", "shape": [2]}
    assert set(side["versions"]) >= {"scoresde", "torch", "numpy", "python"}
    # euler_maruyama integrates any member of the reverse family (lam = 0.5 above); an ODE solver
    # always runs lam = 0 and records that.
    assert main(["sample", "--target", "ring", "--solver", "ode_heun", "--steps", "3", "--n", "8",
                 "--out", str(out), "--no-plot"]) == 0
    assert json.loads((out / "samples.json").read_text())["lam"] == 0.0


def test_target_without_exact_score_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", "--target", "moons", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "exact score" in err and "eight_gaussians" in err and "scoresde train --data moons" in err


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    import scoresde

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"scoresde {scoresde.__version__}"


@pytest.mark.parametrize(("extra", "expected"), [([], "ode"), (["--batch-size", "20"], "ode"),
                                                 (["--mask", "1,0", "--observed", "1,0"], "none"),
                                                 (["--denoise", "none"], "none")])
def test_sample_sidecar_records_the_end_step_taken(tmp_path: Path, extra: list[str], expected: str) -> None:
    # It recorded null for the default; the default depends on the solver, the SDE and a hook
    # (an imputation hook ends at eps), so the record is what the run did.
    out = tmp_path / "s"
    assert main(["sample", "--target", "ring", "--solver", "dpmpp_2m", "--steps", "6", "--n", "50",
                 "--out", str(out), "--no-plot", "--no-progress", *extra]) == 0
    side = json.loads((out / "samples.json").read_text())
    assert side["denoise"] == expected and side["denoise_given"] == ("--denoise" in extra)


def test_the_cli_step_default_is_the_libraries_when_its_signature_says_not_given() -> None:
    # solvers.sample(steps=None) means STEPS_DEFAULT; the CLI read None from the signature and
    # failed with "'<' not supported between instances of 'NoneType' and 'int'"
    import inspect

    import solvers
    from scoresde.cli._settings import sample_defaults
    from solvers.api import STEPS_DEFAULT

    assert inspect.signature(solvers.sample).parameters["steps"].default is None
    assert sample_defaults()["steps"] == STEPS_DEFAULT == 500
