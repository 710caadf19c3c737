"""The training loop: DSM loss, AdamW + warm-up + clipping, EMA, logging, atomic checkpoints.

One step (Song et al. 2021, Alg. in App. H, continuous-time DSM)::

    x0 ~ data (batch_size / world_size per process)
    t ~ U(t_min, T) or importance q(t);  z ~ N(0, I);  x_t = alpha x0 + sigma z
    loss = mean (w/sigma^2) ||eps_theta(x_t, t) - z||^2      (scoresde.losses)
    backward; clip the global grad norm; AdamW step; LR schedule step; EMA update

Randomness: the initial weights come from ``config.seed``; each process draws data, ``t`` and
``z`` from its own generator seeded from ``(seed, rank)``, and seeds torch's global RNG the same
way (used only by dropout). All of it, plus the optimizer, scheduler and EMA state, goes into
the checkpoint, so ``resume`` continues bit-for-bit as if the run had not stopped.

Under ``torchrun`` the model is wrapped in DistributedDataParallel automatically
(:mod:`.distributed`); only rank 0 logs, evaluates and writes files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..models import ScoreModel
from ..sde import AffineSDE
from .checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig, config_diff, lr_factor
from .data import make_data, sample_shape, stamp_identity
from .distributed import DistInfo, resolve_device, setup
from .ema import EMA

__all__ = ["Trainer", "train", "load_model", "EvalFn", "METRICS_NAME", "CONFIG_NAME"]

EvalFn = Callable[["Trainer"], dict[str, float]]
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"


def _stream_seed(seed: int, rank: int) -> int:
    """Seed of one process's random stream, distinct per ``(seed, rank)``."""
    return (int(seed) * 0x9E3779B1 + int(rank) * 0x85EBCA77 + 0x2545F491) % (2**63)


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


class Trainer:
    """Trains a :class:`~scoresde.models.ScoreModel` as described by a :class:`TrainConfig`.

    Args:
        config: the run's configuration.
        data: a data source (``sample(n, generator=g)``); default ``make_data(config.data)``.
        out_dir: where ``checkpoint.pt``, ``config.json`` and ``metrics.jsonl`` go
            (``None``: nothing is written).
        resume: continue from ``out_dir/checkpoint.pt`` (it must exist and match the config).
        overwrite: allow starting afresh in a directory that already has a checkpoint.
        eval_fn: called every ``config.eval_every`` steps on rank 0 as ``eval_fn(trainer)``;
            its dict is merged into the log record.
        progress: show a tqdm progress bar (rank 0 only).

    Attributes: ``model`` (trained weights), ``ema`` (:class:`EMA`; ``ema.model`` is what
    sampling uses), ``sde``, ``step``, ``history`` (list of log records).
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        data: Any | None = None,
        out_dir: str | Path | None = None,
        resume: bool = False,
        overwrite: bool = False,
        eval_fn: EvalFn | None = None,
        progress: bool = True,
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", 0)))
        self.dist: DistInfo = setup(self.device)
        if config.batch_size % self.dist.world_size:
            raise ValueError(
                f"batch_size {config.batch_size} is not divisible by the {self.dist.world_size} processes"
            )
        self.local_batch = config.batch_size // self.dist.world_size
        self.dtype = config.torch_dtype
        self.sde: AffineSDE = config.sde.build()
        self.data = make_data(config.data) if data is None else make_data(data)
        stamp_identity(config, self.data, explicit=data is not None)  # config.data_id
        shape = sample_shape(self.data)
        if shape != tuple(config.model.data_shape):
            raise ValueError(
                f"data {config.data!r} has samples of shape {shape} but model.data_shape is "
                f"{tuple(config.model.data_shape)}"
            )

        self.model: ScoreModel = config.model.build(seed=config.seed).to(self.device, self.dtype).train()
        o = config.optim
        self.ema = EMA(self.model, o.ema_decay, warmup=o.ema_warmup)
        self.net: torch.nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self._params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay, foreach=True
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(o, s, self.config.steps))
        self.loss_fn = config.loss.build(self.sde)

        stream = _stream_seed(config.seed, self.dist.rank)
        self.generator = torch.Generator(self.device).manual_seed(stream)
        torch.manual_seed(stream)  # global RNG: dropout only

        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.eval_fn = eval_fn
        self.progress = progress
        self._zero_accumulators()
        self._last_saved = -1
        self._t_start = time.perf_counter()

        self.out_dir = Path(out_dir) if out_dir is not None else None
        if self.out_dir is not None:
            ckpt = self.out_dir / CHECKPOINT_NAME
            if resume:
                self.resume(ckpt)
            elif ckpt.exists() and not overwrite:
                raise FileExistsError(
                    f"{ckpt} exists; resume it (resume=True / --resume), pass overwrite=True, "
                    "or choose another output directory"
                )
            if self.dist.is_main:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                config.to_json(self.out_dir / CONFIG_NAME)
                if not resume:
                    (self.out_dir / METRICS_NAME).write_text("")
        elif resume:
            raise ValueError("resume=True needs out_dir (the run directory to resume)")

    # --- one optimisation step ------------------------------------------------------------
    def _zero_accumulators(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        self._gnorm_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        self._n_acc = 0

    def train_step(self) -> Tensor:
        """One DSM step on a fresh batch; returns the (detached) batch loss."""
        x0 = self.data.sample(self.local_batch, generator=self.generator).to(self.device, self.dtype)
        loss = self.loss_fn(self.net, x0, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.config.optim.grad_clip
        if clip is not None:
            gnorm = torch.nn.utils.clip_grad_norm_(self._params, clip, foreach=True)
            self._gnorm_sum += gnorm.detach()
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update()
        self.step += 1
        loss = loss.detach()
        self._loss_sum += loss
        self._n_acc += 1
        return loss

    # --- the loop -------------------------------------------------------------------------
    def fit(self, *, until: int | None = None) -> list[dict[str, Any]]:
        """Train up to ``config.steps`` (or stop early at step ``until``); returns ``history``."""
        c = self.config
        stop = c.steps if until is None else min(int(until), c.steps)
        bar = tqdm(total=c.steps, initial=self.step, unit="step", dynamic_ncols=True,
                   mininterval=0.5, disable=not (self.progress and self.dist.is_main))
        self._t_start = time.perf_counter()
        self._t_step0 = self.step
        try:
            while self.step < stop:
                self.train_step()
                bar.update(1)
                s = self.step
                record: dict[str, Any] = {}
                if (c.log_every and s % c.log_every == 0) or s == c.steps:
                    record.update(self._log_stats())
                if c.eval_every and s % c.eval_every == 0 and self.eval_fn is not None and self.dist.is_main:
                    record.update({k: float(v) for k, v in self.eval_fn(self).items()})
                if record:
                    self._record(record, bar)
                if self.out_dir is not None and c.ckpt_every and s % c.ckpt_every == 0:
                    self.save()
            if self.out_dir is not None and self.step == c.steps and self._last_saved != self.step:
                self.save()
        finally:
            bar.close()
        return self.history

    def _log_stats(self) -> dict[str, Any]:
        n = max(self._n_acc, 1)
        stats = torch.stack([self._loss_sum, self._gnorm_sum]) / n
        stats = self.dist.mean(stats)
        loss, gnorm = stats.tolist()
        if not torch.isfinite(stats).all():
            raise FloatingPointError(
                f"training diverged: mean loss {loss} at step {self.step}; lower the learning rate "
                "or enable gradient clipping"
            )
        elapsed = time.perf_counter() - self._t_start
        out = {"loss": loss, "lr": self.scheduler.get_last_lr()[0],
               "steps_per_s": (self.step - self._t_step0) / max(elapsed, 1e-9)}
        if self.config.optim.grad_clip is not None:
            out["grad_norm"] = gnorm
        self._zero_accumulators()
        return out

    def _record(self, record: dict[str, Any], bar: Any) -> None:
        record = {"step": self.step, **record}
        self.history.append(record)
        if not self.dist.is_main:
            return
        if "loss" in record:
            bar.set_postfix(loss=f"{record['loss']:.4g}", refresh=False)
        if self.out_dir is not None:
            with open(self.out_dir / METRICS_NAME, "a") as f:
                f.write(json.dumps(record) + "\n")

    # --- checkpoints ----------------------------------------------------------------------
    def _rng_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "generator": self.generator.get_state(),
            "torch": torch.get_rng_state(),
            "acc": [self._loss_sum.cpu(), self._gnorm_sum.cpu(), self._n_acc],
        }
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (rank 0's view plus every rank's RNG)."""
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
        }

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write a checkpoint atomically (rank 0 only; every rank must call it)."""
        state = self.state_dict()  # collective under DDP
        out: Path | None = None
        if self.dist.is_main:
            if path is None:
                if self.out_dir is None:
                    raise ValueError("no path given and the trainer has no out_dir")
                path = self.out_dir / CHECKPOINT_NAME
            out = save_checkpoint(state, path)
        self._last_saved = self.step
        self.dist.barrier()
        return out

    def resume(self, path: str | Path) -> None:
        """Load a checkpoint into this trainer; refuses other configs, shapes or world sizes."""
        path = Path(path)
        state = load_checkpoint(path, map_location="cpu")
        try:
            saved = TrainConfig.from_json(state["config"])
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: unreadable config in checkpoint: {err}") from None
        diff = config_diff(saved, self.config)
        if diff:
            raise CheckpointError(
                f"{path} was written by a different configuration; refusing to resume:\n  "
                + "\n  ".join(diff)
            )
        if int(state["world_size"]) != self.dist.world_size:
            raise CheckpointError(
                f"{path} was written by {state['world_size']} process(es); resuming with "
                f"{self.dist.world_size} cannot continue the same random streams"
            )
        _check_shapes(self.model.state_dict(), state["model"], "model", path)
        _check_shapes(self.ema.model.state_dict(), state["ema"]["model"], "EMA", path)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rng = state["rng"][self.dist.rank]
        self.generator.set_state(rng["generator"])
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self._loss_sum = rng["acc"][0].to(self.device)
        self._gnorm_sum = rng["acc"][1].to(self.device)
        self._n_acc = int(rng["acc"][2])
        self.step = int(state["step"])
        self._last_saved = self.step
        self.history = list(state["history"])
        # Drop log lines written after this checkpoint by the interrupted run.
        metrics = path.parent / METRICS_NAME
        if self.dist.is_main and metrics.exists():
            keep = [ln for ln in metrics.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= self.step]
            tmp = metrics.with_suffix(".tmp")
            tmp.write_text("".join(k + "\n" for k in keep))
            tmp.replace(metrics)

    # --- results --------------------------------------------------------------------------
    def score_fn(self, *, ema: bool = True) -> Callable[[Tensor, Tensor], Tensor]:
        """Score callable of the EMA (default) or raw weights, for any solver."""
        return (self.ema.model if ema else self.model).score_fn(self.sde)

    def close(self) -> None:
        """Release the process group if this trainer created it."""
        self.dist.close()


def train(config: TrainConfig, **kwargs: Any) -> Trainer:
    """Build a :class:`Trainer` (same keyword arguments), run :meth:`Trainer.fit`, return it."""
    trainer = Trainer(config, **kwargs)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return trainer


def load_model(
    path: str | Path, *, ema: bool = True, device: str | torch.device = "cpu", sde: Any = None,
) -> tuple[ScoreModel, AffineSDE, TrainConfig]:
    """Rebuild ``(model, sde, config)`` from a checkpoint file or run directory.

    ``ema=True`` (default) loads the EMA weights, which is what sampling should use. The model
    is returned in eval mode on ``device``; use ``model.score_fn(sde)`` with any solver.
    ``sde``: the SDE object of a run trained with a custom SDE (required then).
    """
    state = load_checkpoint(path, map_location="cpu")
    try:
        config = TrainConfig.from_json(state["config"])
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: unreadable config in checkpoint: {err}") from None
    model = config.model.build(seed=config.seed)
    weights = state["ema"]["model"] if ema else state["model"]
    _check_shapes(model.state_dict(), weights, "EMA" if ema else "model", Path(path))
    model.load_state_dict(weights)
    model = model.to(device=torch.device(device), dtype=config.torch_dtype).eval()
    if sde is not None:
        config.sde = config.sde.with_instance(sde)
    return model, config.sde.build(), config
