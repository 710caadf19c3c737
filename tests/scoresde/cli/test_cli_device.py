"""``--device`` for ``scoresde sample`` and ``likelihood`` (``train`` had it already).

Here only the CPU and the refusals can run; the CUDA paths (sample and likelihood of a model
trained with ``--device cuda``, chunked and unchunked, class guidance) were run on a GPU machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scoresde.cli import build_parser, main


def test_sample_and_likelihood_take_a_device_and_record_it(tmp_path: Path) -> None:
    for name in ("sample", "likelihood"):
        args = build_parser().parse_args([name, "--target", "sharp_8"])
        assert args.device == "cpu"  # the same draws as solvers.sample's defaults
    out = tmp_path / "s"
    assert main(["sample", "--target", "sharp_8", "--solver", "dpmpp_2m", "--steps", "8", "--n", "50", "--out",
                 str(out), "--no-plot", "--no-progress", "--device", "auto"]) == 0
    record = json.loads((out / "samples.json").read_text())
    assert record["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")  # "auto" as resolved
    csv = tmp_path / "l.csv"
    assert main(["likelihood", "--target", "sharp_8", "--n", "20", "--integrator", "rk4_simpson", "--steps", "4",
                 "--no-progress", "--device", "cpu", "--out", str(csv)]) == 0
    assert json.loads((tmp_path / "l.json").read_text())["device"] == "cpu"


def test_chunked_sampling_on_a_device_equals_unchunked(tmp_path: Path) -> None:
    common = ["sample", "--target", "sharp_8", "--solver", "dpmpp_2m", "--steps", "8", "--n", "60", "--no-plot",
              "--no-progress", "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--batch-size", "25"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "samples.npy"), np.load(tmp_path / "b" / "samples.npy"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("command", [["sample", "--n", "5", "--no-plot"], ["likelihood", "--n", "5"]])
def test_an_unavailable_device_is_refused_up_front(command: list[str], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path / ("o" if command[0] == "sample" else "o.csv"))]
    assert main([command[0], "--target", "sharp_8", *command[1:], *out, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA support" in err and "--device cpu" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.csv").exists()
