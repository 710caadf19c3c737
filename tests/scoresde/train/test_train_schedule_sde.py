"""Training with a custom SDE object, a learning-rate schedule relative to the run length, and
resuming with a larger ``--steps``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from scoresde.cli import main
from scoresde.sde import SCHEDULE_PROBE_KEY, VPSDE, schedule_probe
from scoresde.train import (
    OptimConfig,
    load_checkpoint,
    load_model,
    lr_factor,
    toy_config,
    train_toy,
)


class CubicVP:
    """A VP SDE with beta(t) = 0.1 + 19.9 t^3, written against the protocol only (no base class)."""

    T, eps = 1.0, 1e-3

    def _b(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        beta = 0.1 + 19.9 * t**3
        big_b = 0.1 * t + 19.9 * t**4 / 4  # int_0^t beta
        return beta, big_b

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        beta, _ = self._b(t)
        return -0.5 * beta.view(-1, *[1] * (x.ndim - 1)) * x

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return self._b(t)[0].sqrt()

    def marginal_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, big_b = self._b(t)
        return torch.exp(-0.5 * big_b), torch.sqrt(-torch.expm1(-big_b))

    def prior_sample(self, shape: tuple[int, ...], *, generator: Any = None, dtype: Any = None,
                     device: Any = None) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def config(self) -> dict[str, float]:
        return {"beta0": 0.1, "beta1": 19.9}


def test_custom_sde_trains_and_must_be_passed_again_to_load(tmp_path: Path) -> None:
    sde = CubicVP()
    # alpha(T) = 0.079 leaves p_T far from this SDE's N(0, I) prior: training says so first.
    with pytest.warns(UserWarning, match=r"alpha\(T\) = 0\.079"):
        model, hist = train_toy("eight_gaussians", sde=sde, steps=4, out_dir=tmp_path, progress=False)
    assert hist and torch.isfinite(torch.tensor(hist[-1]["loss"]))
    with pytest.raises(ValueError, match="custom SDE.*CubicVP.*load_model\\(path, sde=my_sde\\)"):
        load_model(tmp_path)
    m2, sde2, cfg = load_model(tmp_path, sde=sde)
    # the class's config, and its half log-SNR at nine times (two schedules of one class differ)
    assert sde2 is sde and cfg.sde.name == "custom"
    assert cfg.sde.params["config"] == {**sde.config(), SCHEDULE_PROBE_KEY: schedule_probe(sde)}
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    t = torch.full((5,), 0.5)
    torch.testing.assert_close(m2.score_fn(sde2)(x, t), model.score_fn(sde)(x, t))
    with pytest.raises(ValueError, match="trained with the SDE custom"):
        load_model(tmp_path, sde=VPSDE())
    with pytest.raises(TypeError, match="lacks.*marginal_coeffs"):
        train_toy("eight_gaussians", sde=object(), steps=1, progress=False)


def test_a_run_on_the_packages_edm_sde_loads_without_passing_it_again(tmp_path: Path) -> None:
    # An outside check trained on scoresde.EDMSDE (the docs' EDM SDE) and was told at load time
    # that a config file cannot rebuild it: it is the package's own class, rebuilt from its config.
    from scoresde import EDMSDE

    sde = EDMSDE(sigma_min=0.004, sigma_max=60.0)
    model, _ = train_toy("eight_gaussians", sde=sde, steps=3, out_dir=tmp_path, progress=False)
    m2, sde2, cfg = load_model(tmp_path)
    assert isinstance(sde2, EDMSDE) and (sde2.sigma_min, sde2.sigma_max) == (0.004, 60.0)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    t = torch.full((5,), 0.5)
    torch.testing.assert_close(m2.score_fn(sde2)(x, t), model.score_fn(sde)(x, t))
    with pytest.raises(ValueError, match="trained with the SDE custom"):
        load_model(tmp_path, sde=EDMSDE())  # another EDM SDE is still refused
    assert main(["sample", "--checkpoint", str(tmp_path), "--solver", "dpmpp_2m", "--steps", "5", "--n", "8",
                 "--out", str(tmp_path / "samples")]) == 0


def test_short_recipe_is_not_decayed_right_after_warmup() -> None:
    c = toy_config("eight_gaussians", steps=100)
    o = c.optim
    f = [lr_factor(o, s, c.steps) for s in range(c.steps)]
    assert max(f) == pytest.approx(1.0) and f.index(max(f)) == 9  # warm-up is 10% of the run
    assert f[50] > 0.5  # halfway through the cosine the factor is (1 + 0.1) / 2 = 0.55
    assert f[-1] == pytest.approx(0.1, abs=1e-3)  # reaches min_lr_ratio at the last step
    # The 3,000-step recipe is unchanged: 100 warm-up steps, cosine over the 2,900 after them.
    old = OptimConfig(lr=2e-3, warmup_steps=100, decay_steps=2900, min_lr_ratio=0.1)
    new = toy_config("eight_gaussians", steps=3000).optim
    assert all(lr_factor(new, s, 3000) == pytest.approx(lr_factor(old, s)) for s in range(0, 3000, 37))


def test_resume_with_more_steps_extends_the_schedule(tmp_path: Path) -> None:
    out = tmp_path / "run"
    small = ["--width", "16", "--depth", "1", "--batch-size", "32", "--no-progress"]
    assert main(["train", "--steps", "20", "--out", str(out), *small]) == 0
    assert main(["train", "--steps", "40", "--out", str(out), "--resume", *small]) == 0
    state = load_checkpoint(out)
    assert state["step"] == 40
    assert state["history"][-1]["lr"] == pytest.approx(0.1 * 2e-3)  # decayed to the new end


def test_toy_recipe_warns_where_uniform_times_miss_the_data_scale() -> None:
    # An outside check trained the toy recipe on scoresde.EDMSDE (sigma = t up to 80): uniform t
    # put under 2% of the draws at noise below the data's scale, and 36% of the samples landed
    # between the modes (VP 5%), with no warning anywhere.
    import warnings

    from scoresde import EDMSDE

    with pytest.warns(UserWarning, match=r"EDMSDE: the toy recipe draws t uniformly .* puts 1\.\d+% of the"):
        toy_config("eight_gaussians", sde=EDMSDE(), steps=10)
    for sde in ("vp", "subvp", "ve", "cosine"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            toy_config("eight_gaussians", sde=sde, steps=10)


def test_loading_with_another_sde_of_the_same_class_is_refused_and_the_difference_named(tmp_path: Path) -> None:
    # A run on ve with its defaults is stored as "ve {}": VESDE(sigma_max=40) was accepted silently.
    # An EDM run refused another EDM SDE, but printed both raw configs for the user to compare.
    import warnings

    from scoresde import EDMSDE, VESDE

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_toy("eight_gaussians", sde="ve", steps=2, out_dir=tmp_path / "ve", progress=False)
        train_toy("eight_gaussians", sde=EDMSDE(), steps=2, out_dir=tmp_path / "edm", progress=False)
    with pytest.raises(ValueError, match=r"they differ in sigma_max \(50\.0 stored, 40\.0 given\)$"):
        load_model(tmp_path / "ve", sde=VESDE(sigma_max=40.0))
    load_model(tmp_path / "ve", sde=VESDE())  # the same SDE loads
    with pytest.raises(ValueError, match=r"they differ in T \(80\.0 stored, 40\.0 given\), "
                                         r"sigma_max \(80\.0 stored, 40\.0 given\)$"):
        load_model(tmp_path / "edm", sde=EDMSDE(sigma_max=40.0))
    # Another class is named as such (the refusal used to name a schedule probe, three ends, or nothing).
    from scoresde import VPSDE, SubVPSDE

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_toy("eight_gaussians", sde="vp", steps=2, out_dir=tmp_path / "vp", progress=False)
    for run, sde, names in (("vp", EDMSDE(), "VPSDE stored, EDMSDE given"),
                            ("vp", SubVPSDE(), "VPSDE stored, SubVPSDE given"),
                            ("edm", VESDE(sigma_max=80.0), "EDMSDE stored, VESDE given"),
                            ("ve", VPSDE(), "VESDE stored, VPSDE given")):
        with pytest.raises(ValueError, match=rf"they are different SDE classes \({names}\)$"):
            load_model(tmp_path / run, sde=sde)
    with pytest.raises(TypeError, match=r"got the class VESDE, not an SDE: pass an instance, e.g. VESDE\(\)"):
        load_model(tmp_path / "ve", sde=VESDE)


def test_load_model_and_train_toy_are_reachable_from_the_top_level() -> None:
    import scoresde
    from scoresde.train import load_model as loader
    from scoresde.train import train_toy as trainer

    assert scoresde.load_model is loader and scoresde.train_toy is trainer
