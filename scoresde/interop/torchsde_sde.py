"""Our reverse-time dynamics as a public ``torchsde`` SDE object (``torchsde.sdeint`` drives it).

The reverse family (Song et al. 2021, eq. 6 and App. D; ``lam = 1`` is the reverse SDE, 0
the probability-flow ODE) runs from ``T`` down to ``eps``::

    dx = F(x, t) dt + lam g(t) dW_bar,       F = f(x, t) - (1 + lam^2)/2 g(t)^2 score(x, t).

torchsde integrates forward in time only, so the object uses ``s = -t`` (exact in floating
point: every grid time comes back bit for bit), in which the same process reads, for
increasing ``s`` in ``[-T, -eps]``::

    dx = -F(x, -s) ds + lam g(-s) dB(s).

The noise is additive (``g`` does not depend on ``x``): Ito and Stratonovich forms agree,
so the Ito methods (``euler``, ``milstein``, ``srk``) and the Stratonovich ones (``midpoint``,
``heun``, with ``sde_type="stratonovich"``) all solve the same process and reach the data
distribution. ``reversible_heun`` does not: its auxiliary state is only weakly stable on the
dissipative reverse SDE, and the samples stay biased (std 1.09 at 127 steps, 0.94 at 1023,
against the exact 1.42 on ``eight_gaussians`` under VP); the object warns when it detects
that method. torchsde's conventions (``torchsde.sdeint`` docstring):
the state is ``y: (B, d)``; ``noise_type="diagonal"`` takes ``g(s, y): (B, d)`` (one
Brownian motion per coordinate); ``"additive"`` takes a ``(B, d, m)`` matrix, here the
diagonal ``lam g I`` of shape ``(B, d, d)`` (``m = d``). ``(B, d, 1)`` would be
``"scalar"`` noise, one Brownian motion shared by all coordinates, which is a different
process. Data of shape ``(B, *D)`` is flattened to ``d = prod(D)``.

    rev = ReverseTorchSDE(sde, score, data_shape=(2,))
    bm = torchsde.BrownianInterval(t0=-sde.T, t1=-sde.eps, size=(B, d), dt=dt, entropy=0)
    ys = torchsde.sdeint(rev, rev.state(x_T), rev.times(ts), method="euler", dt=dt, bm=bm)
    x = rev.unstate(ys[-1])

Pass ``dt`` to ``BrownianInterval`` too: without it the interval refines its cache tree to
the average step it is queried with, and the sliver last step (~1e-15) that torchsde's
``s += dt`` loop takes when the sums are not exact makes it refine without bound (a hang,
memory growing to gigabytes).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import torch
from torch import Tensor, nn

from solvers.dynamics import ReverseDynamics
from solvers.inputs import as_real, check_data_shape, check_generator
from solvers.protocol import DiffusionSDE, ScoreFn

from ._warn import warn_at_user

__all__ = ["ReverseTorchSDE", "TorchsdeBrownianNoise", "NOISE_TYPES", "brownian_range"]

NOISE_TYPES: tuple[str, ...] = ("diagonal", "additive")


class ReverseTorchSDE(nn.Module):
    """torchsde-compatible SDE for our reverse dynamics, in the increasing time ``s = -t``.

    Args:
        sde: the forward SDE (any ``solvers.DiffusionSDE``).
        score: ``score(x: (B, *D), t: (B,)) -> (B, *D)``.
        data_shape: ``D``, the shape of one sample.
        lam: noise level of the reverse family, in ``[0, 1]`` (1: reverse SDE; 0:
            probability-flow ODE; ``solvers.ReverseDynamics`` refuses ``lam > 1``).
        noise_type: ``"diagonal"`` (default; ``g: (B, d)``) or ``"additive"`` (``g: (B, d, d)``).
            The noise is additive either way, but torchsde picks its methods' work by this
            label: with ``"additive"``, ``method="srk"`` takes about 3x fewer score evaluations
            (382 against 1271 NFE over 127 steps in 2-D, the same statistics) and ``"milstein"``
            skips its autograd term. ``"additive"`` stores a ``(B, d, d)`` matrix per call, so it
            pays for small ``d`` (2-D toys), not for images; the built-in ``torchsde_srk`` solver
            uses it.
        sde_type: ``"ito"`` (default) or ``"stratonovich"`` (the same process: additive noise).

    Attributes:
        noise_type, sde_type: what torchsde reads.
        dynamics: the ``solvers.ReverseDynamics`` it wraps (``dynamics.nfe`` counts score calls).

    Raises:
        TypeError: ``data_shape`` not a sequence of integers (``2.5`` is refused, not
            truncated); ``lam`` not a real number (a string, a bool, ``None``); ``sde`` /
            ``score`` refused by ``solvers.ReverseDynamics``.
        ValueError: ``data_shape`` empty or with a size below 1; unknown ``noise_type`` /
            ``sde_type``; ``lam`` outside ``[0, 1]`` or not finite.

    Warns:
        UserWarning: (once per object, at the ``torchsde.sdeint`` call) when driven by
            torchsde's ``reversible_heun`` / ``adjoint_reversible_heun``, which are biased on
            the reverse SDE (above); use ``euler``, ``milstein``, ``srk``, ``midpoint`` or ``heun``.
    """

    def __init__(self, sde: DiffusionSDE, score: ScoreFn, *, data_shape: Sequence[int], lam: float = 1.0,
                 noise_type: str = "diagonal", sde_type: str = "ito") -> None:
        super().__init__()
        if noise_type not in NOISE_TYPES:
            raise ValueError(f"noise_type must be one of {NOISE_TYPES}, got {noise_type!r}")
        if sde_type not in ("ito", "stratonovich"):
            raise ValueError(f"sde_type must be 'ito' or 'stratonovich', got {sde_type!r}")
        if isinstance(lam, bool):
            raise TypeError(f"lam must be a real number, got the boolean {lam!r}")
        lam_f = as_real(lam, "lam")
        if not (0.0 <= lam_f <= 1.0):  # NaN fails this too
            raise ValueError(f"lam must lie in [0, 1] (1: the reverse SDE, 0: the probability-flow ODE), "
                             f"got {lam!r}")
        self.noise_type, self.sde_type = noise_type, sde_type
        self.data_shape = check_data_shape(data_shape)
        self.dim = math.prod(self.data_shape)
        self.sde, self.lam = sde, lam_f
        self.dynamics = ReverseDynamics(sde, score, self.lam)
        self._warned_method = False

    # --- conversions ------------------------------------------------------------------
    def state(self, x: Tensor) -> Tensor:
        """``x: (B, *D) -> y: (B, d)``.

        Raises:
            TypeError: ``x`` not a tensor.
            ValueError: ``x`` not of shape ``(B, *data_shape)``.
        """
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (B, *{self.data_shape}), got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"x must have shape (B, *{self.data_shape}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.dim)

    def unstate(self, y: Tensor) -> Tensor:
        """``y: (..., B, d) -> (..., B, *D)`` (also for ``sdeint``'s stacked output).

        Raises:
            ValueError: ``y``'s last dimension is not ``d = prod(data_shape)``.
        """
        if y.ndim < 1 or y.shape[-1] != self.dim:
            raise ValueError(f"y must have shape (..., B, {self.dim}) (d = prod(data_shape={self.data_shape})), "
                             f"got {tuple(y.shape)}")
        return y.reshape(*y.shape[:-1], *self.data_shape)

    def times(self, ts: Tensor | Sequence[float]) -> Tensor:
        """Our decreasing times ``t`` in ``[eps, T]`` -> torchsde's increasing ``s = -t`` (exact).

        Raises:
            ValueError: ``ts`` not a non-empty 1-D strictly decreasing grid, or with a time
                outside ``[eps, T]`` (as `solvers.sample` refuses such a grid).
        """
        s = -torch.as_tensor(ts, dtype=torch.float64)
        if s.ndim != 1 or s.numel() == 0 or not bool((s[1:] > s[:-1]).all()):
            raise ValueError("ts must be a 1-D strictly decreasing grid of times (from T down to eps)")
        eps, T = float(self.sde.eps), float(self.sde.T)
        lo, hi = float(-s[-1]), float(-s[0])
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < eps * (1 - 1e-9) or hi > T * (1 + 1e-9):
            raise ValueError(f"ts must lie in [eps={eps:g}, T={T:g}] of {type(self.sde).__name__}, "
                             f"got times from {hi:g} down to {lo:g}")
        return s

    def _t(self, s: Tensor | float, y: Tensor) -> Tensor:
        t = -torch.as_tensor(s)
        # checked where reading it costs no device synchronisation (torchsde's times on the CPU)
        t_value = float(t.reshape(-1)[0]) if t.numel() and t.device.type == "cpu" else 0.0
        if not 0.0 <= t_value <= float(self.sde.T) * (1 + 1e-7):  # NaN fails this too
            raise ValueError(f"torchsde asked for the dynamics at s = {-t_value:g}, i.e. t = {t_value:g}, outside "
                             f"[0, T={float(self.sde.T):g}]: integrate over rev.times(ts), the negated times "
                             f"(s = -t runs from -T up to -eps)")
        return t.to(dtype=y.dtype, device=y.device).expand(y.shape[0])

    def _warn_if_reversible_heun(self) -> None:
        """Warn once if torchsde's reversible Heun is calling (a look at the few frames above)."""
        if self._warned_method or self.lam == 0.0:
            return
        try:
            frame: FrameType | None = sys._getframe(2)  # the caller of f
        except ValueError:  # called from the outermost frame
            return
        for _ in range(_METHOD_FRAMES):
            if frame is None:
                return
            path = frame.f_code.co_filename
            if path.endswith("reversible_heun.py") and path.startswith(_TORCHSDE_DIR):
                break
            frame = frame.f_back
        else:
            return
        self._warned_method = True
        warn_at_user(
            "torchsde's reversible_heun is biased on the reverse SDE: its auxiliary state is only weakly "
            "stable on these dissipative dynamics, and the samples do not reach the data distribution "
            "(sample std 1.09 at 127 steps and 0.94 at 1023 against the exact 1.42 on eight_gaussians "
            "under VP; docs/guide.md, docs/defaults.md). Use method='euler', 'milstein' or 'srk' (Ito), "
            "or 'midpoint' / 'heun' with sde_type='stratonovich'",
            UserWarning, extra_dirs=(_TORCHSDE_DIR,))

    # --- torchsde interface ------------------------------------------------------------
    def f(self, s: Tensor, y: Tensor) -> Tensor:
        """Drift in ``s``: ``-F(x, -s)``, ``y: (B, d) -> (B, d)``."""
        self._warn_if_reversible_heun()
        return -self.dynamics.drift(self.unstate(y), self._t(s, y)).reshape(y.shape)

    def g(self, s: Tensor, y: Tensor) -> Tensor:
        """Diffusion ``lam g(-s)``: ``(B, d)`` (diagonal) or ``(B, d, d)`` (additive)."""
        if y.ndim != 2 or y.shape[1] != self.dim:
            raise ValueError(f"y must have shape (B, {self.dim}) (d = prod(data_shape={self.data_shape})), "
                             f"got {tuple(y.shape)}")
        gt = self.dynamics.diffusion(self._t(s, y))  # (B,), includes lam
        diag = gt[:, None].expand(y.shape[0], self.dim)
        return diag if self.noise_type == "diagonal" else torch.diag_embed(diag)


def _torchsde_dir() -> str:
    try:
        import torchsde  # a core dependency; the check is skipped without it
    except ImportError:  # pragma: no cover
        return "\0"  # matches no path
    return str(Path(torchsde.__file__).resolve().parent)


_TORCHSDE_DIR: str = _torchsde_dir()
"""torchsde's package directory (its ``_core/methods/reversible_heun.py`` is the method to flag)."""

_METHOD_FRAMES = 6
"""Frames above ``f`` searched for torchsde's reversible Heun (its step calls ``sde.f_and_g``,
through torchsde's wrapper: 2-3 frames)."""


_RANGE_RTOL = 1e-6
"""Query ends this close (relative to the Brownian range's length) outside it count as inside
(float32-built grids); they are clamped to the range, as torchsde would clamp them."""


def brownian_range(bm: object) -> tuple[float, float] | None:
    """``(t0, t1)`` of a torchsde Brownian object, or ``None`` when it does not say.

    Read from ``BrownianInterval`` itself or from the ``BrownianInterval`` that torchsde's
    ``BrownianTree`` / ``BrownianPath`` wrap (``_interval``); any other callable is not checked.
    """
    for obj in (bm, getattr(bm, "_interval", None)):
        start, end = getattr(obj, "_start", None), getattr(obj, "_end", None)
        if isinstance(start, (int, float)) and isinstance(end, (int, float)):
            return float(start), float(end)
    return None


class TorchsdeBrownianNoise:
    """A ``solvers`` noise source reading a torchsde Brownian object ``bm(s_a, s_b)`` in ``s = -t``.

    With it our solvers (e.g. ``solvers.EulerMaruyama(final_noise=True)``) see exactly the
    increments ``torchsde.sdeint`` takes from the same ``bm``: the increment over
    ``[t_to, t_from]`` is ``bm(-t_from, -t_to)``, reshaped to the state. A run from ``T``
    down to ``eps`` therefore needs ``bm`` to cover ``s`` in ``[-T, -eps]``: outside its range
    torchsde clamps the query (with a warning) and returns zero increments, a noiseless run.

    Args:
        bm: e.g. ``torchsde.BrownianInterval(t0=-T, t1=-eps, size=(B, d), dtype=..., dt=dt,
            entropy=seed)``.
        generator: for ``normal()`` draws (solvers that also need fresh Gaussians).

    Raises:
        TypeError: ``bm`` not callable, ``generator`` not a ``torch.Generator`` or ``None``.
        ValueError: a ``bm`` whose range lies in ``s >= 0`` (forward time, e.g. torchsde's
            default ``t0=0, t1=1``); (in `increment`) an increment outside ``bm``'s range
            (the message names the needed ``t0=-T, t1=-eps``), or with another number of
            entries than the state.
    """

    def __init__(self, bm: object, generator: torch.Generator | None = None) -> None:
        if not callable(bm):
            raise TypeError(f"bm must be a torchsde Brownian object called as bm(s_a, s_b), got {type(bm).__name__}")
        if generator is not None:
            check_generator(generator, generator.device if isinstance(generator, torch.Generator) else torch.device("cpu"))
        self.bm, self.generator = bm, generator
        self.range = brownian_range(bm)
        self._t_start: float | None = None  # the run's first time (T), learnt at the first increment
        if self.range is not None and self.range[0] >= 0:
            raise ValueError(
                f"bm covers s in [t0, t1] = [{self.range[0]:g}, {self.range[1]:g}], forward time; the "
                f"reverse-time run from T down to eps reads it at s = -t in [-T, -eps] (s < 0): create "
                f"it with t0=-T, t1=-eps, e.g. torchsde.BrownianInterval(t0=-sde.T, t1=-sde.eps, ...)")

    def _in_range(self, a: float, b: float) -> tuple[float, float]:
        """``(a, b)`` checked against ``bm``'s ``[t0, t1]`` (clamped within `_RANGE_RTOL`).

        Raises:
            ValueError: ``[a, b]`` not inside ``[t0, t1]``; names the needed ``t0=-T, t1=-eps``.
        """
        if self.range is None:
            return a, b
        t0, t1 = self.range
        tol = _RANGE_RTOL * (t1 - t0)
        if a < t0 - tol or b > t1 + tol:
            start = self._t_start if self._t_start is not None else -a
            raise ValueError(
                f"bm covers s in [t0, t1] = [{t0:g}, {t1:g}] but this increment needs s in "
                f"[{a:g}, {b:g}] (s = -t); the run from T = {start:g} down to eps needs a Brownian "
                f"motion created with t0=-T = {-start:g} and t1=-eps (the run's last time), e.g. "
                f"torchsde.BrownianInterval(t0=-sde.T, t1=-sde.eps, size=(B, d), dt=...)")
        return min(max(a, t0), t1), min(max(b, t0), t1)

    def increment(self, t_from: float, t_to: float, like: Tensor) -> Tensor:
        """``bm(-t_from, -t_to)`` (for ``t_from > t_to``), reshaped to ``like: (B, *D)``.

        Raises:
            ValueError: outside ``bm``'s range (`_in_range`); a ``bm`` of another size.
        """
        if self._t_start is None:
            self._t_start = max(float(t_from), float(t_to))
        a, b = self._in_range(*sorted((-float(t_from), -float(t_to))))
        w: Tensor = self.bm(a, b)
        if w.numel() != like.numel():
            raise ValueError(f"bm(s_a, s_b) returned {tuple(w.shape)} ({w.numel()} entries) for a state of shape "
                             f"{tuple(like.shape)}; create the Brownian object with size=(B, d) = "
                             f"({like.shape[0]}, {like[0].numel()})")
        return w.reshape(like.shape).to(like.dtype)

    def normal(self, like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=self.generator, dtype=like.dtype, device=like.device)
