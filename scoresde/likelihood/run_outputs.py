"""What the chunked likelihood run (`scoresde.likelihood.runner.LikelihoodRun`) fills as it goes:
the per-point outputs, in input order, and the progress bar over the chunks' time spans."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .pilot import Solved
from .result import LikelihoodResult

if TYPE_CHECKING:
    from .runner import LikelihoodRun

__all__ = ["ChunkOutputs", "ChunkProgress"]


class ChunkOutputs:
    """Preallocated per-sample outputs, filled chunk by chunk in input order."""

    def __init__(self, n: int, m: int) -> None:
        self.n, self.m = n, m
        self.x_T: Tensor | None = None
        self.delta: Tensor | None = None
        self.prior: Tensor | None = None
        self.corr: Tensor | None = None
        self.pieces: list[Solved] = []  # only when autograd graphs must be kept

    def put(self, s: Solved) -> None:
        if s.x_T.requires_grad or s.delta.requires_grad:
            self.pieces.append(s)
            return
        if self.x_T is None:
            self.x_T = s.x_T.new_empty((self.n, *s.x_T.shape[1:]))
            self.delta = s.delta.new_zeros((self.n, s.delta.shape[1]))
            self.prior = s.delta.new_empty(self.n)
            self.corr = s.delta.new_zeros((self.n, s.delta.shape[1]))
        assert self.delta is not None and self.prior is not None and self.corr is not None
        self.x_T[s.idx] = s.x_T.detach()
        self.delta[s.idx] = s.delta.detach()
        self.prior[s.idx] = s.prior.detach().to(self.prior.dtype)
        if s.correction is not None:
            self.corr[s.idx] = s.correction.detach().to(self.corr.dtype)

    def _assemble(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if not self.pieces:
            assert self.x_T is not None and self.delta is not None and self.prior is not None
            assert self.corr is not None
            return self.x_T, self.delta, self.prior, self.corr
        order = torch.cat([p.idx for p in self.pieces])
        inv = torch.empty_like(order)
        inv[order] = torch.arange(order.numel(), device=order.device)
        delta = torch.cat([p.delta for p in self.pieces])[inv]
        corr = torch.cat([p.correction if p.correction is not None else torch.zeros_like(p.delta)
                          for p in self.pieces])[inv]
        return (torch.cat([p.x_T for p in self.pieces])[inv], delta,
                torch.cat([p.prior for p in self.pieces])[inv].to(delta.dtype), corr)

    def result(self, run: LikelihoodRun, nfe: int, score_calls: int, seconds: float,
               stats: list[dict[str, Any]]) -> LikelihoodResult:
        x_T, delta, prior, corr = self._assemble()
        per_probe = prior[:, None] + delta + corr
        m = per_probe.shape[1]
        hutch = run.opts.divergence.divergence == "hutchinson"
        return LikelihoodResult(
            log_prob=per_probe.mean(dim=1), prior_log_prob=prior, delta_log_prob=delta.mean(dim=1), x_T=x_T,
            probe_log_probs=per_probe if hutch else None,
            std_err=per_probe.std(dim=1) / math.sqrt(m) if m >= 2 else None,
            nfe=nfe, score_calls=score_calls, seconds=seconds, eps=run.lo, T=run.hi, stats=stats,
            density="data" if run.data else "marginal", end_correction=corr.mean(dim=1) if run.data else None)


class ChunkProgress:
    """tqdm bar counting the fraction of `[eps, T]` integrated, summed over chunks."""

    def __init__(self, n_chunks: int, lo: float, hi: float) -> None:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        self.lo, self.span = lo, hi - lo
        self.bar = tqdm(total=n_chunks, desc="log-likelihood", unit="batch",
                        bar_format="{l_bar}{bar}| {n:.2f}/{total} batches [{elapsed}<{remaining}{postfix}]")
        self.done = 0.0
        self.nfe = 0

    def hook(self, chunk: int) -> Callable[[float], None]:
        def on_eval(t: float) -> None:
            frac = min(max((t - self.lo) / self.span, 0.0), 1.0)
            target = chunk + frac
            if target > self.done + 1e-3:
                self.bar.update(target - self.done)
                self.done = target

        return on_eval

    def finish_chunk(self, chunk: int, nfe: int) -> None:
        self.bar.update(chunk + 1 - self.done)
        self.done = chunk + 1
        self.nfe += nfe
        self.bar.set_postfix(nfe=self.nfe)

    def close(self) -> None:
        self.bar.close()
