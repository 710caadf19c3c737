"""Label-conditional networks with a null label, trained with label dropout, checked against exact class conditionals."""

from __future__ import annotations

import copy

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.conditional import ClassifierFreeGuidance, ClassMixture, ConditionalReference
from scoresde.models.conditional import LabelConditional
from scoresde.models.mlp import MLP
from scoresde.models.unet import UNet
from scoresde.train.classifier import mixture_data
from scoresde.train.conditional import train_conditional

VP = sd.VPSDE()
CLASSES = [0, 0, 1, 1, 2, 2, 3, 3]


def test_label_embedding_changes_output_and_checks_labels() -> None:
    torch.manual_seed(0)
    unet = LabelConditional(UNet((1, 8, 8), channels=8, groups=4), 10)
    x, t = torch.randn(2, 1, 8, 8), torch.full((2,), 0.5)
    assert unet(x, t, torch.tensor([1, 10]), VP).shape == x.shape
    m = LabelConditional(MLP((64,), zero_out=False), 10, input_scaling=False)  # zero_out would hide the labels
    x = torch.randn(2, 64)
    a = m(x, t, torch.tensor([1, 1]))
    b = m(x, t, torch.tensor([2, 10]))
    assert a.shape == x.shape and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="0 .. 10"):
        m(x, t, torch.tensor([0, 11]))
    with pytest.raises(ValueError, match="labels must have shape"):
        m(x, t, torch.tensor([0]))
    with pytest.raises(RuntimeError, match="with labels"):
        m.net(x, t)


def test_label_conditional_scales_its_input_by_c_in_of_the_sde() -> None:
    torch.manual_seed(0)
    m = LabelConditional(MLP((2,), zero_out=False), 4)
    x, t, c = torch.randn(3, 2) * 40, torch.tensor([0.2, 0.6, 1.0]), torch.tensor([0, 1, 4])
    ve = sd.VESDE()
    alpha, sigma = ve.marginal_coeffs(t)
    c_in = torch.rsqrt(alpha**2 + sigma**2)[:, None]  # sigma_data = 1
    plain = copy.deepcopy(m)
    plain.input_scaling = False  # the same weights, fed x unscaled
    torch.testing.assert_close(m(x, t, c, ve), plain(c_in * x, t, c), rtol=0, atol=0)
    torch.testing.assert_close(m(x, t, c, VP), plain(x, t, c), rtol=1e-6, atol=1e-6)  # VP: c_in = 1
    with pytest.raises(TypeError, match=r"call model\(x, t, labels, sde\)"):
        m(x, t, c)
    with pytest.raises(ValueError, match="sigma_data"):
        LabelConditional(MLP((2,)), 4, sigma_data=0.0)
    with pytest.raises(TypeError, match="input_scaling"):
        LabelConditional(MLP((2,)), 4, input_scaling=1)  # type: ignore[arg-type]


@pytest.mark.slow
def test_cfg_trained_on_mixture_reaches_exact_class_conditional() -> None:
    torch.manual_seed(0)
    mix = sd.targets.eight_gaussians()
    model = train_conditional(LabelConditional(MLP((2,)), 4), *mixture_data(mix, CLASSES, 8000), VP,
                              steps=1000, seed=0)
    cm = ClassMixture(mix, CLASSES)
    ref = ConditionalReference(cm.conditional(1), VP, VP.eps, n=2000)
    res = {}
    for w in (0.0, 3.0):
        s = ClassifierFreeGuidance(model.score_fn(VP), 1, w, null_label=model.null_label, n_classes=4)
        with torch.no_grad():
            res[w] = ref.evaluate(solvers.sample(VP, s, (2000, 2), "dpmpp_2m", steps=50, seed=0).samples)
    # A 1000-step network is not exact: 3000 steps measured 5.2, the unconditional ~6e3.
    assert res[0.0]["combined"] < 30
    assert res[3.0]["spread"] > res[0.0]["spread"]  # w > 0 sharpens the modes


def test_the_input_scaling_settings_travel_with_the_weights() -> None:
    # An outside check: weights saved without input scaling (or with another sigma_data) loaded
    # into a default LabelConditional without a word, and gave other outputs (1.65 under VE).
    torch.manual_seed(0)
    ve = sd.VESDE()
    x, t, c = torch.randn(4, 2) * 10, torch.full((4,), 0.5), torch.tensor([0, 1, 2, 3])
    for kw in ({"input_scaling": False}, {"sigma_data": 1.42}):
        saved = LabelConditional(MLP((2,), zero_out=False), 4, **kw)
        loaded = LabelConditional(MLP((2,), zero_out=False), 4)
        loaded.load_state_dict(saved.state_dict())
        assert (loaded.input_scaling, loaded.sigma_data) == (saved.input_scaling, saved.sigma_data)
        torch.testing.assert_close(loaded(x, t, c, ve), saved(x, t, c, ve), rtol=0, atol=0)
    # A state_dict from before the settings were stored is that of an unscaled network.
    old = {k: v for k, v in LabelConditional(MLP((2,)), 4, input_scaling=False).state_dict().items()
           if k != "input_scaling_settings"}
    with pytest.raises(RuntimeError, match="input_scaling=False"):
        LabelConditional(MLP((2,)), 4).load_state_dict(old)
    unscaled = LabelConditional(MLP((2,)), 4, input_scaling=False)
    unscaled.load_state_dict(old)
    assert not unscaled.input_scaling


def test_a_float64_model_trains_in_float64() -> None:
    # train_conditional cast the data to float32: a float64 model failed with a dtype error.
    mix = sd.targets.eight_gaussians()
    x, labels = mixture_data(mix, CLASSES, 200)
    model = train_conditional(LabelConditional(MLP((2,)), 4).double(), x, labels, sd.VESDE(), steps=3, seed=0)
    assert next(model.parameters()).dtype == torch.float64
    s = model.score_fn(sd.VESDE())(torch.randn(3, 2, dtype=torch.float64), torch.full((3,), 0.5, dtype=torch.float64),
                                   torch.tensor([0, 1, 4]))
    assert s.dtype == torch.float64 and bool(torch.isfinite(s).all())
