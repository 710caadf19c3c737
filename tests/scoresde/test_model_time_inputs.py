"""Times and dtypes at the models' and targets' doors: an integer, float or 0-d ``t``, a
data dtype other than the model's, ``sample_marginal``'s ``dtype`` and ``t``."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
from scoresde.models.embeddings import GaussianFourierEmbedding, SinusoidalEmbedding


@pytest.mark.parametrize("embedding", [SinusoidalEmbedding(8), GaussianFourierEmbedding(8)])
def test_an_integer_time_embeds_as_the_same_float(embedding: torch.nn.Module) -> None:
    """Cast to int64, the frequencies rounded to integers (most to 0): another embedding, silently."""
    t = torch.tensor([0, 1, 3])
    torch.testing.assert_close(embedding(t), embedding(t.float()))


def test_model_takes_integer_float_and_0d_times_and_names_a_bad_one() -> None:
    sde = sd.VPSDE()
    model = sd.models.ModelConfig(net={"width": 8, "zero_out": False}).build(seed=0)
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    ref = model(x, torch.full((3,), 1.0), sde, "eps")
    torch.testing.assert_close(model(x, torch.full((3,), 1), sde, "eps"), ref)  # int64 t
    torch.testing.assert_close(model(x, 1.0, sde, "eps"), ref)
    torch.testing.assert_close(model(x, torch.tensor(1.0), sde, "eps"), ref)
    torch.testing.assert_close(model.score_fn(sde)(x, 0.5), model.score_fn(sde)(x, torch.full((3,), 0.5)))
    torch.testing.assert_close(model(x, torch.full((3,), 1.0, dtype=torch.float64), sde, "eps"), ref)
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(3,\), got \(2,\)"):
        model(x, torch.rand(2), sde)
    with pytest.raises(TypeError, match="model parameters are torch.float32 .* but x is torch.float64"):
        model(x.double(), 0.5, sde)  # would lose precision silently
    with pytest.raises(TypeError, match="model parameters are torch.float32 .* but x is torch.float64"):
        model.score_fn(sde)(x.double(), torch.full((3,), 0.5))
    wide = sd.models.ModelConfig(net={"width": 8, "zero_out": False}).build(seed=0).double()
    torch.testing.assert_close(wide(x, 1.0, sde, "eps"), wide(x.double(), 1.0, sde, "eps"))  # cast up


def test_sample_marginal_checks_dtype_and_time() -> None:
    target, sde = sd.targets.eight_gaussians(), sd.VPSDE()
    assert target.sample_marginal(3, sde, 0.5, dtype="float64").dtype == torch.float64
    assert target.sample_marginal(3, sde, torch.tensor(0.5)).shape == (3, 2)
    for dtype in (torch.int64, torch.bool):
        with pytest.raises(ValueError, match="floating-point dtype"):
            target.sample_marginal(3, sde, 0.5, dtype=dtype)
    with pytest.raises(ValueError, match=r"t must be one time .* got shape \(3,\)"):
        target.sample_marginal(3, sde, torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(TypeError, match="t must be a real number"):
        target.sample_marginal(3, sde, "0.5")


def test_model_config_refuses_what_it_used_to_coerce() -> None:
    """sigma_data = inf zeroed the input scaling (the network saw zeros), input_scaling="no" read
    as True, a data_shape of 2.7 was truncated to 2."""
    from scoresde.models import MLP, ModelConfig, ScoreModel

    with pytest.raises(ValueError, match="sigma_data must be positive and finite, got inf"):
        ModelConfig(sigma_data=float("inf"))
    with pytest.raises(TypeError, match="input_scaling must be True or False, got 'no'"):
        ModelConfig(input_scaling="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be an integer, got 2.7"):
        ModelConfig(data_shape=(2.7,))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sigma_data must be a real number"):
        ModelConfig(sigma_data="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma_data must be positive and finite, got -1.0"):
        ScoreModel(MLP((2,)), sigma_data=-1.0)
    assert ModelConfig(data_shape=[2], sigma_data=0.5).data_shape == (2,)
