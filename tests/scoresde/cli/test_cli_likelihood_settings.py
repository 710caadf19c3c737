"""`scoresde likelihood --out` records every setting next to the per-point numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scoresde.cli import main


def test_likelihood_out_writes_a_settings_sidecar(tmp_path, capsys):
    out = tmp_path / "lp.csv"
    code = main(["likelihood", "--target", "two_gaussians", "--n", "64", "--integrator", "rk4",
                 "--steps", "12", "--seed", "3", "--out", str(out), "--no-progress"])
    assert code == 0
    rows = np.loadtxt(out, delimiter=",", skiprows=1)
    assert rows.shape[0] == 64
    record = json.loads((tmp_path / "lp.json").read_text())
    assert record["integrator"] == "rk4" and record["steps"] == 12 and record["seed"] == 3
    assert record["density"] == "data" and record["target"] == "two_gaussians"
    assert record["data_id"]["shape"] == [64, 2] and len(record["data_id"]["sha256"]) == 64
    assert record["nfe"] > 0 and "torch" in record["versions"]
    # A JSON output keeps its own name; the settings go beside it.
    code = main(["likelihood", "--target", "two_gaussians", "--n", "8", "--out", str(tmp_path / "lp2.json"),
                 "--no-progress"])
    assert code == 0 and (tmp_path / "lp2_settings.json").exists()


def test_likelihood_of_a_checkpoint_defaults_to_its_training_data(tmp_path, capsys):
    small = ["--width", "16", "--depth", "1", "--batch-size", "32", "--no-progress"]
    run = tmp_path / "run"
    assert main(["train", "--data", "eight_gaussians", "--steps", "3", "--out", str(run), *small]) == 0
    common = ["--n", "16", "--integrator", "rk4", "--steps", "6", "--seed", "2", "--no-progress"]
    capsys.readouterr()
    assert main(["likelihood", "--checkpoint", str(run), *common, "--out", str(tmp_path / "a.npy")]) == 0
    assert "16 draws of its training data" in capsys.readouterr().out
    # The same draws as naming the data explicitly: the default is the run's own data.
    assert main(["likelihood", "--checkpoint", str(run), "--data", "eight_gaussians", *common,
                 "--out", str(tmp_path / "b.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    # A run trained on a file that is gone cannot be rebuilt: the error says what to pass.
    data = tmp_path / "pts.npy"
    np.save(data, np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32))
    run2 = tmp_path / "run2"
    assert main(["train", "--data", str(data), "--steps", "3", "--out", str(run2), *small]) == 0
    data.unlink()
    capsys.readouterr()
    assert main(["likelihood", "--checkpoint", str(run2), *common]) == 2
    assert "--data" in capsys.readouterr().err


def test_sidecar_times_are_numbers_and_the_elbo_line_says_what_it_bounds(tmp_path, capsys):
    # The solve's grid was stored as a tensor's repr ("tensor([...])", truncated past 1000
    # entries); the ELBO line gave only a per-point s.e. and did not say which density it bounds.
    out = tmp_path / "lp.csv"
    assert main(["likelihood", "--target", "two_gaussians", "--n", "16", "--integrator", "rk4", "--steps", "12",
                 "--elbo", "--elbo-samples", "16", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "+-" in printed.split("mean ELBO")[1].split("\n")[0]
    assert "lower bound on the SDE model's log p_eps at eps = 0.001" in printed
    record = json.loads((tmp_path / "lp.json").read_text())
    times = record["stats"][0]["t"]
    assert isinstance(times, list) and len(times) == 13 and all(isinstance(v, float) for v in times)


def test_a_checkpoint_gets_tighter_default_tolerances(tmp_path, capsys):
    # A trained network is rough in t: at the library's 1e-5 two trained eight_gaussians MLPs
    # were 2.2e-3 and 4.0e-3 nats per point off a 1e-9 reference, at 1e-6 within 3e-4.
    small = ["--width", "16", "--depth", "1", "--batch-size", "32", "--no-progress"]
    run = tmp_path / "run"
    assert main(["train", "--data", "eight_gaussians", "--steps", "3", "--out", str(run), *small]) == 0
    common = ["--n", "8", "--no-progress"]

    def recorded(*extra: str) -> tuple[float | None, float | None]:
        out = tmp_path / f"l{len(list(tmp_path.iterdir()))}.csv"
        assert main(["likelihood", "--checkpoint", str(run), *common, *extra, "--out", str(out)]) == 0
        record = json.loads(out.with_suffix(".json").read_text())
        return record["rtol"], record["atol"]

    assert recorded() == pytest.approx((1e-6, 1e-6), rel=1e-12)
    assert recorded("--rtol", "1e-4") == pytest.approx((1e-4, 1e-6), rel=1e-12)  # what is given stays
    assert recorded("--divergence", "hutchinson", "--integrator", "rk4", "--steps", "4") == (None, None)
    assert main(["likelihood", "--target", "two_gaussians", "--n", "8", "--no-progress",
                 "--out", str(tmp_path / "t.csv")]) == 0  # an exact score keeps the library default
    assert json.loads((tmp_path / "t.json").read_text())["rtol"] == 1e-5  # (recorded as used)


def test_csv_settings_never_overwrite_an_earlier_json_result(tmp_path, capsys):
    # --out X.csv writes its settings to X.json: the per-point results of an earlier --out X.json
    # run lived there and were silently replaced (an outside pass).
    args = ["likelihood", "--target", "two_gaussians", "--n", "8", "--integrator", "rk4", "--steps", "4",
            "--no-progress", "--out"]
    assert main([*args, str(tmp_path / "X.json")]) == 0
    before = (tmp_path / "X.json").read_bytes()
    code = main([*args, str(tmp_path / "X.csv")])
    assert code != 0 and "holds something else" in capsys.readouterr().err
    assert (tmp_path / "X.json").read_bytes() == before and not (tmp_path / "X.csv").exists()
    # a settings file of an earlier csv run is rewritten as before
    assert main([*args, str(tmp_path / "Y.csv")]) == 0 and main([*args, str(tmp_path / "Y.csv")]) == 0


def test_settings_that_did_not_apply_are_recorded_as_null(tmp_path, capsys):
    # An outside study found "n": 1000 (the data file's 400 rows were scored), "levels": 256 and
    # "data_range" without --bpd, and "steps": 32 / "grid": "auto" for the adaptive dopri5 in the
    # sidecar: a reader could not tell which settings were used.
    data = tmp_path / "pts.npy"
    np.save(data, np.random.default_rng(0).normal(size=(40, 2)))
    out = tmp_path / "lp.csv"
    assert main(["likelihood", "--target", "two_gaussians", "--data", str(data), "--out", str(out),
                 "--no-progress"]) == 0
    record = json.loads((tmp_path / "lp.json").read_text())
    for key in ("n", "steps", "grid", "target_error", "levels", "data_range", "probes", "probe_type", "refresh",
                "elbo_samples", "seed"):
        assert record[key] is None, key
    assert record["integrator"] == "dopri5" and record["rtol"] == record["atol"] == 1e-5  # the default, as used
    # A fixed grid records its steps and grid; the tolerances only where its pilot uses them.
    out2 = tmp_path / "lp2.csv"
    assert main(["likelihood", "--target", "two_gaussians", "--n", "16", "--integrator", "rk4", "--steps", "6",
                 "--grid", "uniform", "--rtol", "1e-4", "--out", str(out2), "--no-progress"]) == 0
    record = json.loads((tmp_path / "lp2.json").read_text())
    assert (record["n"], record["steps"], record["grid"], record["rtol"]) == (16, 6, "uniform", None)


def test_spelling_out_the_default_tolerance_is_the_same_run() -> None:
    # A resume with `--rtol 1e-5` (the default) was refused: "settings.rtol: null -> 1e-05".
    from scoresde.cli import build_parser
    from scoresde.cli.likelihood import applied_settings

    parser = build_parser()
    base = ["likelihood", "--target", "eight_gaussians", "--divergence", "exact"]
    plain = applied_settings(parser.parse_args(base))
    spelled = applied_settings(parser.parse_args([*base, "--rtol", "1e-5", "--atol", "1e-5"]))
    assert plain == spelled and plain["rtol"] == 1e-5
    assert applied_settings(parser.parse_args([*base, "--rtol", "1e-4"]))["rtol"] == 1e-4
