"""Names, messages and help texts that pointed users to something that does not exist or is not so."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

import scoresde as sd
import scoresde.data
import solvers
from scoresde.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _resolve(dotted: str) -> object:
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def test_data_package_exports_its_public_api():
    # Without __all__ the API reference rendered scoresde.data with no members at all.
    names = set(scoresde.data.__all__)
    assert {"load_data", "toy", "suggest_sigma_max", "ArrayDataset", "ImageDataset", "digits"} <= names
    assert all(hasattr(scoresde.data, n) for n in names)


def test_api_reference_lists_every_solver_module_the_docs_name():
    page = (ROOT / "docs" / "api" / "solvers.md").read_text()
    for module in ("solvers.lms", "solvers.gaussian_multistep", "solvers.end", "solvers.auto_grid"):
        assert f"::: {module}\n" in page


def test_messages_name_paths_that_exist():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fix = sd.check_prior(sd.VESDE(sigma_max=0.5), warn=False).fix
    for path in re.findall(r"(scoresde(?:\.\w+)+)\(", fix):
        assert callable(_resolve(path)), path
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sd.VESDE(sigma_max=0.5)
    text = " ".join(str(w.message) for w in caught)
    assert "scoresde.schedules.PRIOR_KL_TOL" in text
    assert _resolve("scoresde.schedules.PRIOR_KL_TOL") == pytest.approx(1e-3)
    doc = solvers.predictors.EulerMaruyamaPredictor.__doc__ or ""
    for path in re.findall(r"`(solvers(?:\.\w+)+)`", doc):
        _resolve(path)


def test_unknown_grid_message_and_help_mention_auto():
    sde = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(sde)
    with pytest.raises(ValueError, match="'auto'"):
        solvers.sample(sde, score, (4, 2), "dpmpp_2m", steps=5, grid="autox")
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for command in ("sample", "compare"):
        grid = next(a for a in sub[command]._actions if a.dest == "grid")
        assert "auto" in (grid.help or "")
    lam = next(a for a in sub["sample"]._actions if a.dest == "lam")
    assert "require" in (lam.help or "")


def test_cli_shows_a_repeated_warning_once(tmp_path, capsys):
    # The VE prior check ran once for the config's SDE and once for the trainer's: two lines.
    code = main(["train", "--data", "eight_gaussians", "--sde", "ve", "--sigma-max", "1", "--steps", "1",
                 "--batch-size", "8", "--width", "16", "--depth", "1", "--out", str(tmp_path / "x"),
                 "--no-progress"])
    assert code == 0
    assert capsys.readouterr().err.count("far from the prior") == 1


def test_sample_docstring_names_the_end_step_exceptions():
    doc = solvers.sample.__doc__ or ""
    assert "after_step" in doc.split("denoise:")[1].split("keep_trajectory")[0]
    assert "trajectory_times" in doc and "stats" in doc
    assert torch.is_tensor(solvers.sample(sd.VPSDE(), sd.targets.eight_gaussians().score_fn(sd.VPSDE()),
                                          (2, 2), "ddim", steps=3, seed=0).samples)
