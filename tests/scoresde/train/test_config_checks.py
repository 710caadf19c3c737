"""Training configs refuse bad values when built, before any file is written, naming the field."""

from __future__ import annotations

import pytest

from scoresde.cli import main
from scoresde.train import TrainConfig
from scoresde.train.config import OptimConfig
from solvers.inputs import NotAnIntegerError


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(steps=2.5), "steps must be an integer, got float 2.5"),
    (dict(steps=True), "steps must be an integer, got the boolean"),
    (dict(batch_size=16.5), "batch_size must be an integer"),
    (dict(log_every=0.5), "log_every"),
])
def test_counts_must_be_integers(kwargs, message):
    with pytest.raises(NotAnIntegerError, match=message):
        TrainConfig(**kwargs)


def test_values_and_groups_are_checked():
    with pytest.raises(TypeError, match="TrainConfig.model must be a ModelConfig"):
        TrainConfig(model="mlp")
    with pytest.raises(ValueError, match="seed must lie in"):
        TrainConfig(seed=2**70)
    with pytest.raises(ValueError, match="betas must be two numbers"):
        OptimConfig(betas=(0.9,))
    with pytest.raises(ValueError, match="lr must be positive and finite, got inf"):
        OptimConfig(lr=float("inf"))
    with pytest.raises(ValueError, match="weight_decay must be >= 0 and finite, got nan"):
        OptimConfig(weight_decay=float("nan"))
    with pytest.raises(ValueError, match=r"loss t_min must lie in \(0, T=1\), got 2.0"):
        TrainConfig.from_dict({"loss": {"t_min": 2.0}})
    assert TrainConfig.from_dict({"loss": {"t_min": 0.01}}).loss.t_min == 0.01


def test_json_configs_name_the_file_and_the_field(tmp_path):
    with pytest.raises(TypeError, match="unknown config field.* loss.foo"):
        TrainConfig.from_dict({"loss": {"foo": 1}})
    with pytest.raises(TypeError, match="config field 'model' must be an object of ModelConfig fields"):
        TrainConfig.from_dict({"model": "mlp"})
    with pytest.raises(TypeError, match="bad value type in config group 'optim'"):
        TrainConfig.from_dict({"optim": {"lr": None}})
    with pytest.raises(TypeError, match="steps must be an integer, got str '10'"):
        TrainConfig.from_dict({"steps": "10"})
    for bad in (None, [1, 2]):
        with pytest.raises(TypeError, match="a TrainConfig is a JSON object"):
            TrainConfig.from_dict(bad)
    broken = tmp_path / "broken.json"
    broken.write_text('{"steps": ')
    with pytest.raises(ValueError, match=f"config file {broken} is not valid JSON"):
        TrainConfig.from_json(broken)
    binary = tmp_path / "model.pt"
    binary.write_bytes(b"\x80\x02\xff\xfe")
    with pytest.raises(ValueError, match="is not a JSON text file"):
        TrainConfig.from_json(binary)


def test_cli_refuses_a_bad_t_min_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--steps", "2", "--t-min", "2", "--out", str(out)]) == 2
    assert "t_min must lie in (0, T=1)" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_edm_output_and_weighting_need_one_sigma_data() -> None:
    # The EDM weighting is a unit weight on the network's target only when the loss and the
    # model use the same sigma_data; the two fields were never compared (a user pass).
    from scoresde.losses import LossConfig
    from scoresde.models import ModelConfig
    from scoresde.train import TrainConfig

    with pytest.raises(ValueError, match="loss sigma_data = 1 differs from the model's 0.5"):
        TrainConfig(model=ModelConfig(output="edm", sigma_data=0.5), loss=LossConfig(weighting="edm"))
    TrainConfig(model=ModelConfig(output="edm", sigma_data=0.5), loss=LossConfig(weighting="edm", sigma_data=0.5))
    TrainConfig(model=ModelConfig(output="eps", sigma_data=0.5), loss=LossConfig(weighting="edm"))  # not EDM's pair
