"""Saving and resuming a `Trainer`: state dict, rotating checkpoints, exact resume, `load_model`.

Split from the training loop; `CheckpointMixin` is mixed into `Trainer` and uses its
attributes (model, EMA, optimizer, scheduler, generator, accumulators, out_dir, dist).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..atomic import atomic_link, clean_stale_temps
from ..models import ScoreModel
from ..prior_checks import check_end_noise
from ..sde import AffineSDE
from .checkpoint import (
    CHECKPOINT_NAME,
    ROTATING_DIR,
    CheckpointError,
    check_finite_weights,
    load_checkpoint,
    prune_rotating,
    require,
    resolve_checkpoint,
    rotating_path,
    save_checkpoint,
)
from .config import RUNTIME_FIELDS, LRAnchor, TrainConfig, config_diff, resume_anchor, trained_t_min
from .distributed import resolve_device
from .runfiles import METRICS_NAME, environment, environment_mismatch, rewrite_metrics

if TYPE_CHECKING:
    from .distributed import DistInfo
    from .ema import EMA
    from .signals import TrainingDiverged

__all__ = ["CheckpointMixin", "load_model"]


def _anchor(saved: Any, path: Path) -> LRAnchor | None:
    """The checkpoint's learning-rate anchor (absent in checkpoints from before it existed)."""
    if saved is None:
        return None
    try:
        warmup, step, progress = saved["warmup"], saved["step"], saved["progress"]
    except (KeyError, TypeError, IndexError):
        raise CheckpointError(f"{path}: unreadable lr_anchor entry {saved!r}") from None
    whole = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (warmup, step))
    fraction = (isinstance(progress, (int, float)) and not isinstance(progress, bool)
                and math.isfinite(progress) and 0.0 <= progress <= 1.0)
    if not (whole and fraction):
        raise CheckpointError(f"{path}: corrupt lr_anchor entry {saved!r} (warmup and step must be "
                              "integers >= 0, progress a fraction in [0, 1])")
    return LRAnchor(warmup, step, float(progress))


def _check_shapes(live: dict[str, Tensor], saved: dict[str, Any], what: str, path: Path) -> None:
    """Refuse a state dict whose keys or shapes differ (before anything is copied)."""
    missing = sorted(set(live) - set(saved))
    extra = sorted(set(saved) - set(live))
    bad = [k for k in live if k in saved and tuple(saved[k].shape) != tuple(live[k].shape)]
    if missing or extra or bad:
        raise CheckpointError(
            f"{path}: {what} weights do not fit this model (missing {missing[:5]}, "
            f"unexpected {extra[:5]}, shape mismatch {bad[:5]})"
        )



class CheckpointMixin:
    """State dict, atomic rotating saves and verified resume for `Trainer`."""

    if TYPE_CHECKING:
        config: TrainConfig
        device: torch.device
        dist: DistInfo
        model: ScoreModel
        ema: EMA
        optimizer: torch.optim.Optimizer
        scheduler: Any
        generator: torch.Generator
        out_dir: Path | None
        keep_checkpoints: int
        step: int
        history: list[dict[str, Any]]
        _loss_sum: Tensor
        _gnorm_sum: Tensor
        _n_acc: int
        _last_saved: int
        _last_saved_path: Path | None
        lr_anchor: LRAnchor | None

        def _diverged(self) -> TrainingDiverged: ...

    # ----------------------------------------------------------------------
    def _rng_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "generator": self.generator.get_state(),
            "generator_device": self.generator.device.type,
            "torch": torch.get_rng_state(),
            "acc": [self._loss_sum.cpu(), self._gnorm_sum.cpu(), self._n_acc],
        }
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (rank 0's view plus every rank's RNG),
        and the environment exact continuation depends on (``env``, see `environment`)."""
        rng = self.dist.all_gather_object(self._rng_state())
        return {
            "step": self.step,
            "config": self.config.to_json(),
            "world_size": self.dist.world_size,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "history": self.history,
            "lr_anchor": None if self.lr_anchor is None else dataclasses.asdict(self.lr_anchor),
            "env": environment(self.device),
        }

    def _weights_finite(self) -> bool:
        tensors = [p for p in self.model.parameters()] + [p for p in self.ema.model.parameters()]
        return bool(torch.stack([torch.isfinite(p).all() for p in tensors]).all())

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write a checkpoint atomically (rank 0 only; every rank must call it).

        Without ``path`` it goes to ``out_dir/checkpoints/step-XXXXXXXX.pt`` and becomes
        ``out_dir/checkpoint.pt``; older ones beyond ``keep_checkpoints`` are deleted.

        Raises:
            TrainingDiverged: the weights are not finite (nothing is written).
        """
        if not self._weights_finite():
            raise self._diverged()
        state = self.state_dict()  # collective under DDP
        out: Path | None = None
        if self.dist.is_main:
            if path is None:
                if self.out_dir is None:
                    raise ValueError("no path given and the trainer has no out_dir")
                out = self._save_rotating(state)
            else:
                out = save_checkpoint(state, path)
        self._last_saved = self.step
        self._last_saved_path = out
        self.dist.barrier()
        return out

    def _save_rotating(self, state: dict[str, Any]) -> Path:
        assert self.out_dir is not None
        latest = self.out_dir / CHECKPOINT_NAME
        if self.keep_checkpoints == 0:
            save_checkpoint(state, latest)
        else:
            atomic_link(save_checkpoint(state, rotating_path(self.out_dir, self.step)), latest)
            prune_rotating(self.out_dir, self.keep_checkpoints)
        for folder in (self.out_dir, self.out_dir / ROTATING_DIR):
            clean_stale_temps(folder)
        return latest

    def resume(self, path: str | Path) -> None:
        """Load a checkpoint into this trainer; refuses other configs, shapes, world sizes,
        missing entries and non-finite weights; warns when the environment differs."""
        path = Path(path)
        state = load_checkpoint(path, map_location="cpu")
        try:
            saved = TrainConfig.from_json(require(state, "config", path))
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: unreadable config in checkpoint: {err}") from None
        diff = config_diff(saved, self.config)
        if diff:
            raise CheckpointError(
                f"{path} was written by a different configuration; refusing to resume:\n  "
                + "\n  ".join(diff)
                + f"\nResume with the checkpoint's settings (only {', '.join(RUNTIME_FIELDS)} may "
                "change; the run's config.json holds the rest), or train these settings in "
                "another output folder (or discard this run with --overwrite)"
            )
        if int(require(state, "world_size", path)) != self.dist.world_size:
            raise CheckpointError(
                f"{path} was written by {state['world_size']} process(es); resuming with "
                f"{self.dist.world_size} cannot continue the same random streams"
            )
        model, ema = require(state, "model", path), require(state, "ema", path)
        ema_model = require(ema, "model", path)
        _check_shapes(self.model.state_dict(), model, "model", path)
        _check_shapes(self.ema.model.state_dict(), ema_model, "EMA", path)
        check_finite_weights(model, path, "model")
        check_finite_weights(ema_model, path, "EMA")
        rng = require(state, "rng", path)[self.dist.rank]
        parts = [require(state, k, path) for k in ("optimizer", "scheduler", "step", "history")]
        mismatch = environment_mismatch(state.get("env"), environment(self.device))
        if mismatch:
            warnings.warn(f"{path}: resuming in a different environment, so the run will not be "
                          "bit-identical to an uninterrupted one: " + "; ".join(mismatch),
                          RuntimeWarning, stacklevel=2)
        self.model.load_state_dict(model)
        self.ema.load_state_dict(ema)
        self.optimizer.load_state_dict(parts[0])
        self.scheduler.load_state_dict(parts[1])
        self._load_rng(rng)
        self.step = self._last_saved = int(parts[2])
        self._last_saved_path = path
        self.history = list(parts[3])
        # A new length: continue the decay from the learning rate reached (no jump).
        self.lr_anchor = resume_anchor(self.config.optim, self.step, saved.steps, self.config.steps,
                                       _anchor(state.get("lr_anchor"), path))
        if self.dist.is_main and self.out_dir is not None:
            # Drop log lines written after this checkpoint by the interrupted run.
            rewrite_metrics(self.out_dir / METRICS_NAME, self.step)

    def _load_rng(self, rng: dict[str, Any]) -> None:
        restore_generator(self.generator, rng["generator"], rng.get("generator_device"))
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self._loss_sum = rng["acc"][0].to(self.device)
        self._gnorm_sum = rng["acc"][1].to(self.device)
        self._n_acc = int(rng["acc"][2])



def restore_generator(generator: torch.Generator, state: Tensor, saved_device: str | None) -> None:
    """Set ``generator`` to a saved ``state``, also when that was saved on another device type.

    A CUDA generator's state (its seed and offset) cannot be loaded into a CPU generator, nor a
    CPU generator's (Mersenne twister) into a CUDA one. A run trained on a GPU and resumed on
    the CPU (or the other way round) then reseeds the generator from a hash of the saved state:
    deterministic, and not the stream the run started with. The resume is then not
    bit-identical to an uninterrupted run, which `CheckpointMixin.resume` already warns about
    (the environment's device differs).
    """
    if saved_device is None or saved_device == generator.device.type:
        try:
            generator.set_state(state)
            return
        except RuntimeError:  # a checkpoint from before "generator_device" was saved
            if saved_device is not None:
                raise
    digest = hashlib.sha256(state.detach().cpu().contiguous().numpy().tobytes()).digest()
    generator.manual_seed(int.from_bytes(digest[:8], "little"))


def load_model(
    path: str | Path, *, ema: bool = True, device: str | torch.device = "cpu", sde: Any = None,
) -> tuple[ScoreModel, AffineSDE, TrainConfig]:
    """Rebuild ``(model, sde, config)`` from a checkpoint file or run directory.

    ``ema=True`` (default) loads the EMA weights, which is what sampling should use. The model
    is returned in eval mode on ``device``; use ``model.score_fn(sde)`` with any solver.
    ``sde``: the SDE object of a run trained with a custom SDE (required then; checked against
    the recorded class and parameters otherwise).

    Raises:
        CheckpointError: missing, damaged, incomplete or non-finite checkpoint (names the file).
    """
    path = resolve_checkpoint(path)
    state = load_checkpoint(path, map_location="cpu")
    if isinstance(state, dict) and state.get("kind") == "noisy_classifier":
        raise CheckpointError(f"{path} is a classifier file (scoresde train-classifier), not a score model; "
                              "pass it as --classifier (load_classifier) and the score model as the checkpoint")
    try:
        config = TrainConfig.from_json(require(state, "config", path))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: unreadable config in checkpoint: {err}") from None
    # Cast before loading: load_state_dict copies into the built (float32) parameters, which
    # would round a float64 run's weights to float32 before a later .to(float64).
    model = config.model.build(seed=config.seed).to(dtype=config.torch_dtype)
    weights = require(require(state, "ema", path), "model", path) if ema else require(state, "model", path)
    what = "EMA" if ema else "model"
    _check_shapes(model.state_dict(), weights, what, path)
    check_finite_weights(weights, path, what)
    model.load_state_dict(weights)
    model = model.to(device=resolve_device(str(device)), dtype=config.torch_dtype).eval()
    if sde is not None:
        config.sde = config.sde.with_instance(sde)
    sde_obj = config.sde.build()
    model.min_score_time = trained_t_min(config, sde_obj)
    model.trained_sde = sde_obj
    _warn_if_blurred_at_end(sde_obj, config, path)
    return model, sde_obj, config


def _warn_if_blurred_at_end(sde: Any, config: TrainConfig, path: Path) -> None:
    """Repeat the toy recipe's warning (`scoresde.schedules.check_end_noise`) at load time: data
    whose spread (the recorded ``sigma_data``, the measured std in the toy recipe) is within ten
    times the noise left at the SDE's ``eps`` stay blurred when sampled, and a user who samples
    the checkpoint later never saw the training log."""
    sigma_data = getattr(config.model, "sigma_data", None)
    if not (isinstance(sigma_data, (int, float)) and sigma_data > 0 and math.isfinite(sigma_data)):
        return
    if hasattr(sde, "marginal_coeffs") and hasattr(sde, "eps"):
        check_end_noise(sde, float(sigma_data), stacklevel=3,
                        source=f"checkpoint {path} (its training data's std, sigma_data)")
