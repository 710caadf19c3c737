"""Whether two SDE configs describe the same SDE: the schedule probe and a tolerant comparison.

`AffineSDE.config` identifies the built-in classes by their parameters; a schedule given by a
callable or a table (`scoresde.BetaSDE`, `scoresde.SigmaSDE`, `scoresde.DiscreteVPSDE`) adds
its half log-SNR at a few fixed times (`schedule_probe`). `configs_match` compares a stored
config (a checkpoint's) with a given one, floats to a relative tolerance.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .sde import AffineSDE

__all__ = ["SCHEDULE_PROBE_KEY", "SCHEDULE_PROBES", "CONFIG_RTOL", "PROBE_TOL", "schedule_probe", "configs_match",
           "custom_sde_config"]

SCHEDULE_PROBE_KEY = "log_snr_probe"
"""`AffineSDE.config` key of a schedule given by a callable or a table (`scoresde.BetaSDE`,
`scoresde.SigmaSDE`, `scoresde.DiscreteVPSDE`): its half log-SNR at `SCHEDULE_PROBES` times.
Configs written before it existed lack it; `configs_match` then does not compare it."""

SCHEDULE_PROBES = 9
"""Number of probe times ``t_i = eps + (T - eps) i / 8``, ``i = 0..8``, of `schedule_probe`."""

CONFIG_RTOL = 1e-9
"""Relative tolerance of `configs_match` on floats (parameters written out and read back)."""

PROBE_TOL = 1e-6
"""Relative and absolute tolerance of `configs_match` on a `schedule_probe` (half log-SNR values):
a schedule recomputed in another order of operations, or in float32 on another device, moves
them by round-off (1e-16 absolute where the log-SNR crosses 0; 1e-7 relative in float32), and
1e-6 in the log-SNR is far below any change of schedule that matters."""


def schedule_probe(sde: AffineSDE) -> list[float]:
    """``lambda(t_i) = ln alpha(t_i) - ln sigma(t_i)`` at ``t_i = eps + (T - eps) i/8``, ``i = 0..8``.

    Evaluated in float64 on the CPU and rounded to 12 significant digits, so that the list is
    JSON-exact and the same on every machine up to `CONFIG_RTOL`. Together with ``T``, ``eps`` and
    the prior it identifies a VP schedule (``alpha^2 = 1/(1 + e^{-2 lambda})``) or a VE one
    (``sigma = e^{-lambda}``) at the probe times, which is what `configs_match` compares.
    """
    t = torch.linspace(sde.eps, sde.T, SCHEDULE_PROBES, dtype=torch.float64)
    with torch.no_grad():
        a, s = sde.marginal_coeffs(t)
        lam = torch.log(a.to(torch.float64)) - torch.log(s.to(torch.float64))
    return [float(f"{v:.12g}") for v in lam.tolist()]


def custom_sde_config(sde: Any) -> dict[str, Any] | None:
    """What identifies an SDE of a class that is not registered (`scoresde.SDES`): its
    ``config()`` when that is JSON-able, with its `schedule_probe` added under
    `SCHEDULE_PROBE_KEY` when the config lacks one and the SDE has ``marginal_coeffs``; so two
    objects of one class with other schedules differ even without a ``config()`` (they looked
    the same to checkpoints and the comparison cache). ``None`` when it has neither; no probe
    when the SDE cannot be evaluated on float64 CPU times (tensors on another device)."""
    config = getattr(sde, "config", None)
    try:
        conf = json.loads(json.dumps(config())) if callable(config) else None
    except (TypeError, ValueError):
        conf = None
    if not isinstance(conf, dict):
        conf = None
    if callable(getattr(sde, "marginal_coeffs", None)) and (conf is None or SCHEDULE_PROBE_KEY not in conf):
        try:
            probe = schedule_probe(sde)
        except (RuntimeError, TypeError, ValueError):  # e.g. its tensors live on another device than the CPU
            return conf
        conf = {**(conf or {}), SCHEDULE_PROBE_KEY: probe}
    return conf


def _values_match(a: Any, b: Any, rtol: float, atol: float = 0.0) -> bool:
    """Equality, with floats (also inside lists) compared to tolerances ``rtol``, ``atol``; a
    `schedule_probe` inside a mapping to `PROBE_TOL`."""
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return bool(a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=atol)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_values_match(x, y, rtol, atol) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(_entry_match(k, a[k], b[k], rtol, atol) for k in a)
    return bool(a == b)


def _entry_match(key: object, a: Any, b: Any, rtol: float, atol: float = 0.0) -> bool:
    """`_values_match` of one config entry; a schedule probe (its key, or a flattened key ending
    in it) within `PROBE_TOL`."""
    if isinstance(key, str) and key.rsplit(".", 1)[-1] == SCHEDULE_PROBE_KEY:
        return _values_match(a, b, max(rtol, PROBE_TOL), max(atol, PROBE_TOL))
    return _values_match(a, b, rtol, atol)


def configs_match(stored: Mapping[str, Any], given: Mapping[str, Any], *, rtol: float = CONFIG_RTOL,
                  optional: tuple[str, ...] = (SCHEDULE_PROBE_KEY,)) -> bool:
    """Whether the SDE config ``given`` describes the SDE of the config ``stored``.

    Every key of ``stored`` must be in ``given`` with a matching value (floats, also inside
    lists, within relative tolerance ``rtol``; anything else equal). A key of ``given`` that
    ``stored`` lacks is a mismatch, except the ``optional`` ones: keys that configs written by
    older versions (e.g. checkpoints) do not have, such as `SCHEDULE_PROBE_KEY`.
    """
    if any(k not in given for k in stored):
        return False
    if any(k not in stored and k not in optional for k in given):
        return False
    return all(_entry_match(k, v, given[k], rtol) for k, v in stored.items())
