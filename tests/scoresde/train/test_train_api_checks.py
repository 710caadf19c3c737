"""The Python training API: the data set keeps its own copy, a data source's batches are checked,
NaN data is named as such, and misspelt or ill-typed settings are refused where they are given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scoresde.data import data_identity
from scoresde.losses import LossConfig
from scoresde.models import ModelConfig
from scoresde.train import OptimConfig, SDEConfig, TrainConfig, Trainer
from scoresde.train.signals import TrainingDiverged


def _config(**kw: object) -> TrainConfig:
    d: dict[str, object] = dict(data="mine", model=ModelConfig(data_shape=(2,), net={"width": 8, "depth": 1}),
                                steps=3, batch_size=8, device="cpu", log_every=1, ckpt_every=0)
    d.update(kw)
    return TrainConfig(**d)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_the_data_set_keeps_its_own_copy(kind: str) -> None:
    # It shared memory with the caller's array: an in-place change after the Trainer was built
    # changed what was trained on, while the recorded data_id kept the original values' hash.
    arr = np.random.default_rng(0).normal(size=(100, 2))
    given = arr if kind == "numpy" else torch.from_numpy(arr.copy())
    tr = Trainer(_config(), data=given, progress=False)
    before = tr.config.data_id["sha256"]
    if kind == "numpy":
        arr *= 100
    else:
        given.mul_(100)  # type: ignore[union-attr]
    tr.fit()
    assert data_identity(tr.data, name="mine")["sha256"] == before
    assert float(tr.data.data.abs().max()) < 10


class _Source:
    def __init__(self, out: object) -> None:
        self.out = out

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> object:
        return self.out(n, generator)  # type: ignore[operator]


def test_a_data_source_must_return_n_rows_of_a_tensor() -> None:
    short = _Source(lambda n, g: torch.randn(3, 2, generator=g))
    with pytest.raises(ValueError, match=r"sample\(\d+\) returned shape \(3, 2\); it must return \d+ rows"):
        Trainer(_config(), data=short, progress=False).fit()
    as_numpy = _Source(lambda n, g: np.zeros((n, 2)))
    with pytest.raises(TypeError, match="must return a torch.Tensor .* returned ndarray"):
        Trainer(_config(), data=as_numpy, progress=False).fit()


def test_nan_from_a_data_source_is_named_as_such_not_as_divergence() -> None:
    def nan_batch(n: int, g: torch.Generator | None) -> torch.Tensor:
        x = torch.randn(n, 2, generator=g)
        x[0, 0] = float("nan")
        return x

    with pytest.raises(TrainingDiverged, match="the data source returned NaN or infinite values at step 1") as err:
        Trainer(_config(), data=_Source(nan_batch), progress=False).fit()
    assert "lower learning rate" not in str(err.value)


def test_importance_sampling_with_the_edm_weight_warns() -> None:
    with pytest.warns(UserWarning, match="importance=True with weighting='edm' makes the loss noisier"):
        LossConfig(weighting="edm", importance=True)


def test_a_misspelt_sde_parameter_is_refused_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"got unknown parameter\(s\) \['sigma_maxx'\]; it accepts: \['sigma_min', "
                                         r"'sigma_max'"):
        SDEConfig("ve", {"sigma_maxx": 3.0})
    assert SDEConfig("ve", {"sigma_max": 30.0}).build().sigma_max == 30.0


def test_betas_of_the_wrong_type_and_a_nan_time_are_named() -> None:
    with pytest.raises(ValueError, match="betas must be two numbers"):
        OptimConfig(betas=0.9)  # type: ignore[arg-type]
    model = ModelConfig(data_shape=(2,), net={"width": 8, "depth": 1}).build(seed=0)
    import scoresde as sd

    with pytest.raises(ValueError, match=r"t contains NaN \(1 of 4 entries\)"):
        model.score_fn(sd.VPSDE())(torch.zeros(4, 2), torch.tensor([0.5, float("nan"), 0.5, 0.5]))


def test_resuming_a_run_on_passed_data_without_it_says_to_pass_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # It said "unknown data 'mine': give a built-in name ...", as if the label were a typo.
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    first = Trainer(_config(ckpt_every=3), data=x, out_dir=tmp_path / "run", progress=False)
    first.fit()
    first.close()
    with pytest.raises(ValueError, match=r"cannot resume without data=: the run in .*run was trained on data "
                                         r"passed in Python \(array 'mine' of shape \(64, 2\)"):
        Trainer(_config(steps=6, ckpt_every=3), out_dir=tmp_path / "run", resume=True, progress=False)
    tr = Trainer(_config(steps=6, ckpt_every=3), data=x, out_dir=tmp_path / "run", resume=True, progress=False)
    assert tr.step == 3
    tr.close()
    with pytest.raises(ValueError, match="unknown data 'mine'"):  # a fresh run keeps the plain message
        Trainer(_config(), out_dir=tmp_path / "other", progress=False)
