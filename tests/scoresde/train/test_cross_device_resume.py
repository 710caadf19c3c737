"""Resuming a run on another device type: a checkpoint written on a GPU resumes on the CPU.

A CUDA generator's saved state (16 bytes: seed and offset) cannot be set into a CPU generator
(and a CPU one's into a CUDA generator); resuming used to stop with torch's "Expected a
CPUGeneratorImplState of size 5056". The data/noise generator is now reseeded from a hash of
the saved state. The GPU checkpoint is simulated here by writing a CUDA-shaped generator state
into a CPU run's checkpoint; the real round trip (train with --device cuda, resume with
--device cpu) was run on a GPU machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scoresde.models import ModelConfig
from scoresde.train import TrainConfig, Trainer, load_checkpoint, save_checkpoint
from scoresde.train.persist import restore_generator

CUDA_STATE = torch.tensor(list(range(16)), dtype=torch.uint8)  # what a CUDA generator's get_state() returns


def _config(**kw: object) -> TrainConfig:
    base = dict(data="eight_gaussians", steps=20, batch_size=32, log_every=5, ckpt_every=0, device="cpu",
                model=ModelConfig(net={"width": 16, "depth": 1}))
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _as_if_saved_on_gpu(path: Path, *, record_device: bool) -> None:
    state = load_checkpoint(path)
    for rng in state["rng"]:
        rng["generator"] = CUDA_STATE.clone()
        if record_device:
            rng["generator_device"] = "cuda"
        else:  # a checkpoint from before the device was recorded
            rng.pop("generator_device", None)
    save_checkpoint(state, path)


def _weights(t: Trainer) -> list[torch.Tensor]:
    return [v.clone() for v in t.model.state_dict().values()]


@pytest.mark.parametrize("record_device", [True, False])
def test_a_gpu_checkpoint_resumes_on_the_cpu_deterministically(tmp_path: Path, record_device: bool) -> None:
    half = Trainer(_config(), out_dir=tmp_path / "run", progress=False)
    half.fit(until=10)
    saved = half.save()
    assert saved is not None and load_checkpoint(saved)["rng"][0]["generator_device"] == "cpu"
    path = tmp_path / "gpu.pt"  # outside the run folder, which the resumed runs write to
    path.write_bytes(saved.read_bytes())
    _as_if_saved_on_gpu(path, record_device=record_device)
    runs = []
    for k in range(2):
        t = Trainer(_config(), out_dir=tmp_path / f"resumed{k}", resume=path, progress=False)
        assert t.step == 10
        t.fit()
        assert t.step == 20
        runs.append(_weights(t))
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)  # the reseeded stream is a function of the saved state
    assert all(torch.isfinite(w).all() for w in runs[0])


def test_restore_generator_sets_a_state_of_its_own_device_exactly() -> None:
    g = torch.Generator().manual_seed(3)
    torch.randn(5, generator=g)
    saved = g.get_state()
    expected = torch.randn(4, generator=g)
    h = torch.Generator().manual_seed(99)
    restore_generator(h, saved, "cpu")
    assert torch.equal(torch.randn(4, generator=h), expected)
    h2 = torch.Generator().manual_seed(99)
    restore_generator(h2, saved, None)  # older checkpoints: tried as is first
    assert torch.equal(torch.randn(4, generator=h2), expected)


def test_restore_generator_reseeds_from_another_device_types_state() -> None:
    a, b = torch.Generator(), torch.Generator()
    restore_generator(a, CUDA_STATE, "cuda")
    restore_generator(b, CUDA_STATE, "cuda")
    assert torch.equal(torch.randn(4, generator=a), torch.randn(4, generator=b))
    c = torch.Generator()
    restore_generator(c, CUDA_STATE + 1, "cuda")  # another saved state: another stream
    fresh = torch.Generator()
    restore_generator(fresh, CUDA_STATE, "cuda")
    assert not torch.equal(torch.randn(4, generator=c), torch.randn(4, generator=fresh))


def test_a_damaged_state_of_the_recorded_device_is_not_silently_reseeded() -> None:
    with pytest.raises(RuntimeError):
        restore_generator(torch.Generator(), CUDA_STATE, "cpu")
