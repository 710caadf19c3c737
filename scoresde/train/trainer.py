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
(`.distributed`); only rank 0 logs, evaluates and writes files.

Robustness: every step's loss (and gradient norm before clipping) is checked for NaN/inf on the device
and read on the host at the next check (every step on CPU, where it costs nothing; every
``check_every`` steps and before every log, save or stop on an accelerator); a diverged run
raises `TrainingDiverged` and never writes non-finite weights. SIGTERM/SIGINT finish the
current step, write a checkpoint and raise `TrainingInterrupted`. The newest
``keep_checkpoints`` checkpoints are kept in ``checkpoints/`` next to ``checkpoint.pt``.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..atomic import atomic_write_bytes
from ..folder_lock import FolderLock
from ..losses import warn_x0_weighting
from ..models import ScoreModel
from ..sde import AffineSDE
from .checkpoint import CHECKPOINT_NAME, prune_rotating
from .config import LRAnchor, TrainConfig, effective_warmup, lr_factor, trained_t_min
from .data import (
    check_fits_dtype,
    check_rows_drawn,
    draw,
    make_data,
    passed_data_hint,
    stamp_identity,
    warn_pixel_levels,
)
from .distributed import DistInfo, resolve_device, setup
from .ema import EMA
from .persist import CheckpointMixin, load_model
from .runfiles import CONFIG_NAME, METRICS_NAME, append_metrics, preflight
from .signals import StopOnSignal, TrainingDiverged, TrainingInterrupted

__all__ = ["Trainer", "train", "load_model", "EvalFn", "METRICS_NAME", "CONFIG_NAME",
           "TrainingDiverged", "TrainingInterrupted"]

EvalFn = Callable[["Trainer"], dict[str, float]]


def _stream_seed(seed: int, rank: int) -> int:
    """Seed of one process's random stream, distinct per ``(seed, rank)``."""
    return (int(seed) * 0x9E3779B1 + int(rank) * 0x85EBCA77 + 0x2545F491) % (2**63)


class Trainer(CheckpointMixin):
    """Trains a `ScoreModel` as described by a `TrainConfig`.

    Args:
        config: the run's configuration.
        data: a data source (``sample(n, generator=g)``); default ``make_data(config.data)``.
        out_dir: where ``checkpoint.pt``, ``checkpoints/``, ``config.json`` and
            ``metrics.jsonl`` go (``None``: nothing is written). Checked before any work.
        resume: ``True`` continues ``out_dir/checkpoint.pt``; a path continues that checkpoint
            (e.g. an older one of ``out_dir/checkpoints/``). It must match the config.
        overwrite: allow starting afresh in a folder that already has a checkpoint or other files.
        eval_fn: called every ``config.eval_every`` steps on rank 0 as ``eval_fn(trainer)``;
            its dict is merged into the log record.
        progress: show a tqdm progress bar (rank 0 only).
        keep_checkpoints: how many of the newest checkpoints ``checkpoints/step-*.pt`` keeps
            (``checkpoint.pt`` is the newest; 0 keeps only ``checkpoint.pt``).
        check_every: host check of the non-finite flag every this many steps (default 1 on
            CPU, 25 on accelerators; it is also checked before every log, save and stop).

    Raises:
        ValueError: bad config, empty data, unusable device or output folder (see `preflight`).
        FileExistsError: ``out_dir`` holds a checkpoint or other files (without ``overwrite``).

    Attributes: ``model`` (trained weights), ``ema`` (`EMA`; ``ema.model`` is what sampling
    uses), ``sde``, ``step``, ``history`` (list of log records).
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        data: Any | None = None,
        out_dir: str | Path | None = None,
        resume: bool | str | Path = False,
        overwrite: bool = False,
        eval_fn: EvalFn | None = None,
        progress: bool = True,
        keep_checkpoints: int = 3,
        check_every: int | None = None,
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", 0)))
        self.dist: DistInfo = setup(self.device)
        if config.batch_size % self.dist.world_size:
            raise ValueError(
                f"batch_size {config.batch_size} is not divisible by the {self.dist.world_size} processes"
            )
        if int(keep_checkpoints) < 0:
            raise ValueError(f"keep_checkpoints must be >= 0, got {keep_checkpoints}")
        self.keep_checkpoints = int(keep_checkpoints)
        self._check_every = max(int(check_every or (1 if self.device.type == "cpu" else 25)), 1)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        if self.out_dir is None and resume is not False:
            raise ValueError("resume needs out_dir (the run directory to resume)")
        if resume is False and config.steps < 1:
            raise ValueError(f"steps must be >= 1 for a new run, got {config.steps} (--steps): there is "
                             "nothing to train; a run is resumed with resume=True (--resume)")
        created = self.out_dir is not None and self.dist.is_main and not self.out_dir.exists()
        self._lock: FolderLock | None = None
        if self.out_dir is not None and self.dist.is_main:  # before any work
            preflight(self.out_dir, resume=resume is not False, overwrite=overwrite)
            # one writer per run folder (FolderInUseError names the other)
            self._lock = FolderLock(self.out_dir, "training run").acquire()
        self.eval_fn = eval_fn
        self.progress = progress
        try:
            self._setup(config, data, resume)
        except BaseException:
            if self._lock is not None:
                self._lock.release(remove=True)
            if created and self.out_dir is not None and not any(self.out_dir.iterdir()):
                self.out_dir.rmdir()  # the folder preflight made: no empty run folder is left behind
            raise

    def _setup(self, config: TrainConfig, data: Any | None, resume: bool | str | Path) -> None:
        """Data, model, optimizer and (on rank 0) the run files, written only once all is checked."""
        self.local_batch = config.batch_size // self.dist.world_size
        self.dtype = config.torch_dtype
        self.sde: AffineSDE = config.sde.build()
        try:
            self.data = make_data(config.data) if data is None else make_data(data)
        except (ValueError, FileNotFoundError) as err:
            hint = passed_data_hint(self.out_dir, config.data) if data is None and resume is not False else ""
            if hint:
                raise type(err)(hint) from None
            raise
        empty = ValueError(f"dataset {config.data!r} is empty: it has no samples to train on")
        if hasattr(self.data, "__len__") and len(self.data) == 0:
            raise empty
        check_fits_dtype(self.data, self.dtype, config.data,
                         "Train with dtype float64 (--dtype float64), or rescale the data")
        probe = draw(self.data, 2, generator=torch.Generator().manual_seed(0), dtype=self.dtype,
                     check_rows=False)  # throwaway
        if probe.shape[0] == 0:
            raise empty
        check_rows_drawn(probe, 2)
        shape = tuple(int(v) for v in probe.shape[1:])
        config = self.config = stamp_identity(config, self.data, explicit=data is not None)  # data_id
        if shape != tuple(config.model.data_shape):
            raise ValueError(
                f"data {config.data!r} has samples of shape {shape} but model.data_shape is "
                f"{tuple(config.model.data_shape)}"
            )
        if resume is False:
            warn_pixel_levels(self.data, shape, config.data)
            warn_x0_weighting(config.model.output, config.loss.weighting, self.sde, config.loss.t_min, stacklevel=3)
        config_text = config.to_json()  # fails (unserialisable config) before any file is written
        self._build(config)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self._zero_accumulators()
        self._last_saved = -1
        self._last_saved_path: Path | None = None
        self._t_start = time.perf_counter()
        if self.out_dir is not None:
            if resume is not False:
                self.resume(self.out_dir / CHECKPOINT_NAME if resume is True else Path(resume))
            if self.dist.is_main:
                if resume is False:
                    prune_rotating(self.out_dir, 0)  # a fresh start: drop an old run's set
                    atomic_write_bytes(self.out_dir / METRICS_NAME, b"")
                if resume is False or self.step < config.steps:
                    # (a resume with nothing to train leaves the run's files as they are: its
                    # config.json keeps describing its checkpoint)
                    # atomic: a failed write (disk full) leaves the run's settings readable for --resume
                    atomic_write_bytes(self.out_dir / CONFIG_NAME, (config_text + "\n").encode())

    def _build(self, config: TrainConfig) -> None:
        """Model, EMA, DDP wrapper, optimizer, schedule, loss and the seeded random streams."""
        self.model: ScoreModel = config.model.build(seed=config.seed).to(self.device, self.dtype).train()
        self.model.min_score_time = trained_t_min(config, self.sde)  # the EMA copy keeps it
        self.model.trained_sde = self.sde
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
        self.lr_anchor: LRAnchor | None = None  # set by `resume` when the run length changed
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(o, s, self.config.steps, self.lr_anchor))
        self.loss_fn = config.loss.build(self.sde)
        stream = _stream_seed(config.seed, self.dist.rank)
        self.generator = torch.Generator(self.device).manual_seed(stream)
        torch.manual_seed(stream)  # global RNG: dropout only

    # --- one optimisation step ------------------------------------------------------------
    def _zero_accumulators(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        self._gnorm_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        self._n_acc = 0
        self._finite = torch.ones((), device=self.device, dtype=torch.bool)
        self._data_finite = torch.ones((), device=self.device, dtype=torch.bool)  # says why, if not

    def train_step(self) -> Tensor:
        """One DSM step on a fresh batch; returns the (detached) batch loss.

        NaN/inf in the loss or the gradient norm (before clipping) is recorded on the device (no host
        sync here); `fit` reads the flag before anything is logged or saved.
        """
        x0 = draw(self.data, self.local_batch, generator=self.generator, dtype=self.dtype).to(self.device)
        self._data_finite &= torch.isfinite(x0).all()
        loss = self.loss_fn(self.net, x0, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss = loss.detach()
        self._finite &= torch.isfinite(loss)
        clip = self.config.optim.grad_clip
        if clip is not None:
            gnorm = torch.nn.utils.clip_grad_norm_(self._params, clip, foreach=True).detach()
            self._finite &= torch.isfinite(gnorm)
            self._gnorm_sum += gnorm
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update()
        self.step += 1
        self._last_loss = loss
        self._loss_sum += loss
        self._n_acc += 1
        return loss

    # --- the loop -------------------------------------------------------------------------
    def fit(self, *, until: int | None = None) -> list[dict[str, Any]]:
        """Train up to ``config.steps`` (or stop early at step ``until``); returns ``history``.

        Raises:
            TrainingDiverged: the loss or gradient norm became NaN/inf (nothing non-finite
                was saved; the last good checkpoint is kept).
            TrainingInterrupted: SIGTERM/SIGINT arrived; the step finished and a checkpoint
                was written (with an ``out_dir``).
        """
        c = self.config
        stop = c.steps if until is None else min(int(until), c.steps)
        bar = tqdm(total=c.steps, initial=self.step, unit="step", dynamic_ncols=True,
                   mininterval=0.5, disable=not (self.progress and self.dist.is_main))
        self._t_start = time.perf_counter()
        self._t_step0 = self._checked = self.step
        try:
            with StopOnSignal() as stopper:
                while self.step < stop:
                    self.train_step()
                    bar.update(1)
                    self._after_step(stop, stopper, bar)
            if self.out_dir is not None and self.step == c.steps and self._last_saved != self.step:
                self.save()
        finally:
            bar.close()
        return self.history

    def _after_step(self, stop: int, stopper: StopOnSignal, bar: Any) -> None:
        """Checks, logging, evaluation, checkpoint and signal stop after step ``self.step``."""
        c, s = self.config, self.step
        log = bool(c.log_every and s % c.log_every == 0) or s == c.steps
        ckpt = self.out_dir is not None and bool(c.ckpt_every) and s % c.ckpt_every == 0
        signum = 0
        if (log or ckpt or s == stop or s % self._check_every == 0
                or (not self.dist.enabled and stopper.signum is not None)):
            signum = self._health(stopper)
        record: dict[str, Any] = self._log_stats() if log else {}
        if c.eval_every and s % c.eval_every == 0 and self.eval_fn is not None and self.dist.is_main:
            record.update({k: float(v) for k, v in self.eval_fn(self).items()})
        if record:
            self._record(record, bar)
        if ckpt:
            self.save()
        if signum:
            path = None
            if self.out_dir is not None:
                if self._last_saved != s:
                    self.save()
                path = self._last_saved_path
            raise TrainingInterrupted(signum, s, path)

    def _health(self, stopper: StopOnSignal) -> int:
        """Read the non-finite flag (all ranks agree); returns a pending signal number or 0."""
        if not self.dist.enabled:  # one host read, no collective
            if not bool(self._finite):
                raise self._diverged()
            self._checked = self.step
            return int(stopper.signum or 0)
        flags = torch.stack([(~self._finite).to(torch.float64),
                             torch.tensor(float(stopper.signum or 0), device=self.device,
                                          dtype=torch.float64)])
        bad, signum = (int(v) for v in self.dist.max(flags).tolist())
        if bad:
            raise self._diverged()
        self._checked = self.step
        return signum

    def _diverged(self) -> TrainingDiverged:
        """The divergence error: when, what, what was kept, and what to try."""
        c, o = self.config, self.config.optim
        when = (f"at step {self.step}" if self.step - self._checked <= 1
                else f"between steps {self._checked + 1} and {self.step}")
        kept = (f"the last good checkpoint is {self._last_saved_path} (step {self._last_saved})"
                if self._last_saved_path is not None else "no checkpoint was written")
        if not bool(self._data_finite):  # not the optimiser: the data source gave NaN/inf
            return TrainingDiverged(
                f"the data source returned NaN or infinite values {when} ({type(self.data).__name__}.sample), "
                f"so the loss is {float(self._last_loss):.4g}; nothing non-finite was saved and {kept}. "
                "Fix the data source (arrays and files are checked when loaded; a sampler object is not)")
        warmup = effective_warmup(o, c.steps, self.lr_anchor)
        tips = [f"a lower learning rate (lr is {o.lr:g})", f"a longer warm-up (warmup is {warmup})"]
        if o.grad_clip is None:
            tips.append("gradient clipping (grad_clip=1)")
        if c.dtype != "float64":
            tips.append("dtype float64")
        return TrainingDiverged(
            f"training diverged {when}: loss {float(self._last_loss):.4g} (NaN/inf in the loss or "
            f"gradients); nothing non-finite was saved and {kept}. Try {', '.join(tips)}, and "
            "start afresh (--overwrite)"
        )

    def _log_stats(self) -> dict[str, Any]:
        n = max(self._n_acc, 1)
        stats = torch.stack([self._loss_sum, self._gnorm_sum]) / n
        loss, gnorm = self.dist.mean(stats).tolist()
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
            append_metrics(self.out_dir / METRICS_NAME, record)

    # --- results --------------------------------------------------------------------------
    def score_fn(self, *, ema: bool = True) -> Callable[[Tensor, Tensor], Tensor]:
        """Score callable of the EMA (default) or raw weights, for any solver."""
        return (self.ema.model if ema else self.model).score_fn(self.sde)

    def close(self) -> None:
        """Release the DDP wrapper, then the process group if this trainer created it.

        The wrapper's reducer holds the group; dropping it first means it is not torn down
        after the group, at interpreter exit.
        """
        self.net = self.model
        gc.collect()
        self.dist.close()
        if getattr(self, "_lock", None) is not None:
            self._lock.release(remove=True)  # another process may write the folder now


def train(config: TrainConfig, **kwargs: Any) -> Trainer:
    """Build a `Trainer` (same keyword arguments), run `Trainer.fit`, return it."""
    trainer = Trainer(config, **kwargs)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return trainer
