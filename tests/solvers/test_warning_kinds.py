"""The solvers' warnings have kinds (`solvers.warning_types`), and `solvers.sample` shows each
message as Python's filters say: once per calling line under the default filter, also when it is
called in a loop, and once per run, not once per chunk."""

from __future__ import annotations

import warnings

import pytest

import scoresde as sd
import solvers


def _coarse_run(seed: int = 0, **kw):
    """ode_heun on Song et al.'s VE SDE below its 13-step limit: a CoarseGridWarning."""
    sde = sd.VESDE()
    return solvers.sample(sde, sd.targets.eight_gaussians().score_fn(sde), shape=(64, 2), solver="ode_heun",
                          steps=8, seed=seed, **kw)


def test_kinds_are_user_or_runtime_warnings_as_before():
    assert issubclass(solvers.CoarseGridWarning, solvers.SolverWarning)
    assert issubclass(solvers.MethodLimitWarning, solvers.SolverWarning)
    assert issubclass(solvers.SolverWarning, UserWarning)
    for kind in (solvers.PriorMismatchWarning, solvers.DivergedWarning, solvers.SDEConsistencyWarning):
        assert issubclass(kind, solvers.SolverWarning) and issubclass(kind, RuntimeWarning)


def test_a_loop_shows_a_warning_once_under_the_default_filter():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for seed in range(4):
            _coarse_run(seed)  # one calling line
    coarse = [w for w in caught if issubclass(w.category, solvers.CoarseGridWarning)]
    assert len(coarse) == 1 and coarse[0].filename == __file__
    # "always" shows it at every call, as Python's filter says.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for seed in range(3):
            _coarse_run(seed)
    assert len([w for w in caught if issubclass(w.category, solvers.CoarseGridWarning)]) == 3


def test_a_chunked_run_shows_its_warning_once():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _coarse_run(batch_size=8)  # 8 chunks
    assert len([w for w in caught if issubclass(w.category, solvers.CoarseGridWarning)]) == 1


def test_one_kind_can_be_silenced_alone():
    sde = sd.VPSDE()
    mix = sd.targets.eight_gaussians()
    far = sd.targets.GaussianMixture(mix.means + 30.0, 0.15)  # far from the prior: a PriorMismatchWarning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", solvers.CoarseGridWarning)
        _coarse_run()
        solvers.sample(sde, far.score_fn(sde), shape=(64, 2), solver="ddim", steps=20, seed=0)
    kinds = {w.category for w in caught}
    assert solvers.CoarseGridWarning not in kinds and solvers.PriorMismatchWarning in kinds


def test_an_error_filter_on_a_kind_raises_it():
    with warnings.catch_warnings():
        warnings.simplefilter("error", solvers.CoarseGridWarning)
        with pytest.raises(solvers.CoarseGridWarning, match="Heun with 8 step"):
            _coarse_run()


@pytest.mark.parametrize("name", ["ode_rk45", "ode_dopri5", "adaptive_sde"])
def test_an_adaptive_solver_says_that_it_ignores_steps(name):
    # steps=10 gave 99-498 NFE without a word, while a grid tensor with another steps= is refused.
    sde = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(sde)
    with pytest.warns(solvers.SolverWarning, match=rf"{name} chooses its own steps \(adaptive\): steps=10 is ignored"):
        r = solvers.sample(sde, score, shape=(32, 2), solver=name, steps=10, seed=0)
    assert r.nfe > 11
    with warnings.catch_warnings():
        warnings.simplefilter("error", solvers.SolverWarning)
        solvers.sample(sde, score, shape=(32, 2), solver=name, seed=0)  # steps left unset: quiet
        # the comparison helpers leave it unset for adaptive solvers themselves
        from scoresde import compare

        compare.sample_solvers(sde, score, [name, "ddim"], shape=(32, 2), steps=10)


def test_the_cli_passes_a_given_step_count_to_an_adaptive_solver_and_records_none(tmp_path, capsys):
    import json

    from scoresde.cli import main

    assert main(["sample", "--target", "eight_gaussians", "--solver", "ode_rk45", "--n", "50", "--no-progress",
                 "--out", str(tmp_path / "quiet")]) == 0
    assert "chooses its own steps" not in capsys.readouterr().err  # the default count is not passed
    assert main(["sample", "--target", "eight_gaussians", "--solver", "ode_rk45", "--steps", "10", "--n", "50",
                 "--no-progress", "--out", str(tmp_path / "given")]) == 0
    assert "warning: ode_rk45 chooses its own steps (adaptive): steps=10 is ignored" in capsys.readouterr().err
    for run in ("quiet", "given"):
        record = json.loads((tmp_path / run / "samples.json").read_text())
        assert record["steps"] is None and record["grid"] is None  # no count and no grid were used


def test_warnings_from_the_run_keep_pythons_semantics():
    # An outside check found the emulation of Python's filters (a record re-issued after the run)
    # failing on a filter whose module is a plain string, as Python's own '__main__' one is, losing
    # the samples; and a score's warning escaping a module filter. Warnings now go out directly.
    sde = sd.VPSDE()
    base = sd.targets.eight_gaussians().score_fn(sde)

    def old_api(x, t):
        warnings.warn("old API", DeprecationWarning, stacklevel=1)
        return base(x, t)

    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()  # then Python's own defaults for DeprecationWarning, the first with a str module
        warnings.filters.insert(0, ("ignore", None, DeprecationWarning, None, 0))
        warnings.filters.insert(0, ("default", None, DeprecationWarning, "__main__", 0))
        r = solvers.sample(sde, old_api, shape=(16, 2), solver="ddim", steps=5, seed=0)
    assert r.samples.isfinite().all() and not any(w.category is DeprecationWarning for w in caught)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", module=__name__)  # the score's module
        solvers.sample(sde, old_api, shape=(16, 2), solver="ddim", steps=5, seed=0)
    assert not any("old API" in str(w.message) for w in caught)


def test_warnings_raised_around_the_run_show_once_per_line_in_a_loop():
    sde = sd.VPSDE()
    off = sd.targets.GaussianMixture(sd.targets.eight_gaussians().means + 30.0, 0.15)  # off the prior
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):  # the same message each time (its numbers follow the seed)
            solvers.sample(sde, off.score_fn(sde), shape=(32, 2), solver="ddim", steps=10, seed=0)
    assert len([w for w in caught if issubclass(w.category, solvers.PriorMismatchWarning)]) == 1


def test_a_warning_from_python_dash_c_reaches_stderr():
    # `python -c` has no source for __main__: re-issuing with its globals raised ImportError.
    import subprocess
    import sys

    code = ("import scoresde as sd, solvers\nsde = sd.VPSDE()\n"
            "s = sd.targets.eight_gaussians().score_fn(sde)\n"
            "solvers.sample(sde, s, shape=(10, 2), solver='euler_maruyama', steps=3, seed=0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "<string>:4: CoarseGridWarning: euler_maruyama with 3 steps" in out.stderr


def test_the_cli_refuses_to_write_a_diverged_run(tmp_path, capsys, monkeypatch):
    # A guided run that blew up to |x| ~ 1e16 was written with a warning and exit code 0.
    from scoresde.cli import main
    from solvers import api

    def diverged(samples, sde, **kw):
        solvers.warning_types.warn("the samples reach |x| = 1.3e+16 ...: the run diverged", solvers.DivergedWarning)

    monkeypatch.setattr(api, "warn_if_diverged", diverged)
    code = main(["sample", "--target", "eight_gaussians", "--solver", "ddim", "--steps", "5", "--n", "20",
                 "--no-progress", "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 3 and "error: the samples reach |x| = 1.3e+16" in err and "nothing was written" in err
    assert not (tmp_path / "d" / "samples.npy").exists()


def test_a_failed_pigdm_run_names_pigdms_known_cause(tmp_path, capsys, monkeypatch):
    # The generic advice ("undertrained? more --steps") does not help: PiGDM's Tweedie estimate
    # divides by alpha(t), and more steps failed too with trained networks (an outside check).
    from scoresde.cli import main

    def fails(*args, **kw):
        raise solvers.NonFiniteScoreError("score returned NaN/inf at t = 0.9787")

    monkeypatch.setattr(solvers, "sample", fails)
    code = main(["sample", "--target", "eight_gaussians", "--mask", "1,0", "--observed", "1,0", "--impute", "pigdm",
                 "--n", "10", "--steps", "5", "--no-progress", "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 1 and "--impute pigdm divides by alpha(t)" in err and "use --impute replacement" in err
