"""Checks of the arguments a user hands to `solvers.sample`.

Each function returns the argument in the form the solvers use (a Python ``int``, a
``torch.device``, a ``torch.dtype``, ...) or raises an error that names the argument, what it
got and what it accepts, before any work is done. Integer-like values from NumPy or torch
(``np.int64(3)``, ``torch.tensor(3)``) are accepted wherever an integer is; floats, booleans
and strings are not, so that ``steps=2.5`` or ``seed="5"`` is never truncated or parsed
behind the user's back.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "MAX_STEPS",
    "NotAnIntegerError",
    "as_count",
    "as_integer",
    "as_real",
    "check_seed",
    "check_generator",
    "check_device",
    "check_dtype",
    "check_shape",
    "check_data_shape",
    "check_x_T",
    "check_score",
]

MAX_STEPS = 10**8
"""Most grid intervals `solvers.sample` accepts: the grid alone is ``8 (steps + 1)`` bytes, and
10^8 score evaluations per sample is beyond any sampling run (an adaptive solver's grid holds
only its two end points, so there it bounds nothing but typos)."""

SEED_RANGE = (-(2**63), 2**64 - 1)
"""Seeds ``torch.Generator.manual_seed`` accepts."""


class NotAnIntegerError(TypeError, ValueError):
    """An argument that must be an integer is not one (a float, a string, a bool, ...).

    Both a ``TypeError`` (the kind of the mistake) and a ``ValueError`` (what counts and sizes
    raised before these checks existed), so either ``except`` catches it.
    """


def _integer(value: Any, name: str) -> int:
    """``value`` as a Python int if it is an integer (Python, NumPy or a one-element torch integer)."""
    if isinstance(value, bool) or (isinstance(value, Tensor) and value.dtype == torch.bool):
        raise NotAnIntegerError(f"{name} must be an integer, got the boolean {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise NotAnIntegerError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None


def as_integer(value: Any, name: str, *, minimum: int | None = None) -> int:
    """``value`` as a Python int (from Python, NumPy or a one-element torch integer), at least
    ``minimum`` if given.

    Raises:
        NotAnIntegerError: not an integer (``2.5``, ``True``, ``"3"``).
        ValueError: below ``minimum``.
    """
    n = _integer(value, name)
    if minimum is not None and n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n}")
    return n


def as_count(value: Any, name: str, *, maximum: int | None = None) -> int:
    """``value`` as a positive Python int, at most ``maximum``.

    Raises:
        NotAnIntegerError: not an integer (a float such as ``2.0`` included).
        ValueError: below 1 or above ``maximum``.
    """
    n = _integer(value, name)
    if n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n}")
    if maximum is not None and n > maximum:
        raise ValueError(f"{name}={n} is more than the {maximum:.0e} this accepts")
    return n


def check_seed(seed: Any) -> int | None:
    """``seed`` as a Python int in ``torch.Generator``'s range, or ``None`` (a random seed).

    torch's CPU generator uses the seed's low 32 bits only, so seeds equal modulo ``2^32``
    give one noise stream (as under ``torch.manual_seed``); they are accepted, not refused.

    Raises:
        TypeError: a ``torch.Generator`` (pass it as ``generator=``); `NotAnIntegerError`: a
            non-integer.
        ValueError: outside ``[-2^63, 2^64 - 1]``.
    """
    if seed is None:
        return None
    if isinstance(seed, torch.Generator):
        raise TypeError("seed= got a torch.Generator; pass it as generator= instead")
    s = _integer(seed, "seed")
    if not SEED_RANGE[0] <= s <= SEED_RANGE[1]:
        raise ValueError(f"seed must lie in [-2**63, 2**64 - 1] (torch.Generator's range), got {s}")
    return s


def _is_bool(value: Any) -> bool:
    """A Python, NumPy or torch boolean (a flag, never a number here)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, torch.Tensor):
        return value.dtype == torch.bool
    return type(value).__module__ == "numpy" and getattr(getattr(value, "dtype", None), "kind", "") == "b"


def as_real(value: Any, name: str) -> float:
    """``value`` as a Python float (any real number, NumPy or one-element torch scalar).

    No range check: callers test finiteness and sign themselves.

    Raises:
        TypeError: a string, bytes, a boolean or anything ``float()`` refuses, with ``name`` in
            the message.
    """
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a real number, got the string {value!r}")
    if _is_bool(value):  # float(True) is 1.0: a flag passed where a number belongs
        raise TypeError(f"{name} must be a real number, got the bool {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}") from None


def check_flag(value: Any, name: str) -> bool:
    """``value`` as a bool: ``True`` / ``False`` (or 1 / 0, a NumPy bool); a string such as
    ``"no"``, which Python would read as true, is refused.

    Raises:
        TypeError: anything else, with ``name`` in the message.
    """
    if isinstance(value, (str, bytes)) or value not in (True, False):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_generator(generator: Any, device: torch.device | None = None) -> torch.Generator | None:
    """``generator`` if it is ``None`` or a ``torch.Generator`` (on ``device``'s type, if given).

    Raises:
        TypeError: anything else (an int belongs in ``seed=``).
        ValueError: a generator on another device type than the samples'.
    """
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        hint = "; an integer seed goes in seed=" if isinstance(generator, int) else ""
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}{hint}")
    if device is not None and generator.device.type != device.type:
        raise ValueError(
            f"generator is on {generator.device.type} but the samples are on {device}; "
            f"create it with torch.Generator(device={str(device)!r})"
        )
    return generator


def check_device(device: Any, *, fix: str = "device='cpu'") -> torch.device:
    """``device`` (a ``torch.device``, a name such as ``"cpu"`` / ``"cuda:0"``, or ``None`` for CPU)
    as a ``torch.device`` this machine and torch build can use.

    ``fix`` is the remedy the messages suggest (the CLI passes its flag's spelling).

    Raises:
        TypeError: not a device, a string or ``None``.
        ValueError: an unknown name, or CUDA / MPS where this build or machine has none.
    """
    if device is None:
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a torch.device, a name such as 'cpu' or 'cuda:0', or None; "
                        f"got {type(device).__name__} {device!r}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "meta":
        raise ValueError(f"device 'meta' holds shapes, not values: nothing can be computed on it; use {fix}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"device {str(dev)!r} requested but {why}; use {fix}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(dev)!r} requested but only {torch.cuda.device_count()} CUDA "
                             f"device(s) are visible; use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {str(dev)!r} requested but MPS is not available; use {fix}")
    return dev


def check_dtype(dtype: Any) -> torch.dtype:
    """``dtype`` (a floating ``torch.dtype`` or its name, ``"float64"`` / ``"torch.float64"``) as
    a ``torch.dtype``; ``None`` is torch's default float dtype.

    Raises:
        ValueError: not a floating-point dtype.
    """
    if dtype is None:
        return torch.get_default_dtype()
    if isinstance(dtype, str):
        candidate = getattr(torch, dtype.removeprefix("torch."), None)
        dtype = candidate if isinstance(candidate, torch.dtype) else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or dtype.is_complex:
        raise ValueError(
            "dtype must be a real floating-point dtype (torch.float64, torch.float32, "
            f"torch.float16, torch.bfloat16) or its name, got {dtype!r}"
        )
    return dtype


def check_shape(shape: Any) -> tuple[int, ...]:
    """``shape`` as ``(B, *D)``: a sequence of at least two positive integers.

    Raises:
        TypeError: not a sequence; `NotAnIntegerError`: a size that is not an integer (``8.5``
            is refused, not truncated).
        ValueError: fewer than two sizes, or a size below 1.
    """
    sizes = _sizes(shape, "shape", "(B, *D)")
    if len(sizes) < 2:
        example = f"({sizes[0]}, 1) for {sizes[0]} one-dimensional samples" if sizes else "(1000, 2)"
        raise ValueError(f"shape must be (B, *D): a batch size and at least one data dimension, got {sizes}; "
                         f"e.g. {example}")
    if any(s < 1 for s in sizes):
        raise ValueError(f"shape must be (B, *D) with positive sizes, got {sizes}")
    return sizes


def check_data_shape(data_shape: Any) -> tuple[int, ...]:
    """``data_shape`` as ``D``, the shape of one sample: a sequence of at least one positive integer.

    Raises:
        TypeError: not a sequence; `NotAnIntegerError`: a size that is not an integer.
        ValueError: empty, or a size below 1.
    """
    sizes = _sizes(data_shape, "data_shape", "D (the shape of one sample, e.g. (2,))")
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"data_shape must be D, the shape of one sample, with positive sizes (e.g. (2,)), got {sizes}")
    return sizes


def _sizes(value: Any, name: str, form: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a tuple {form} of integers, got {type(value).__name__} {value!r}")
    return tuple(_integer(s, f"every size in {name}") for s in value)


def check_x_T(x_T: Any) -> Tensor | None:
    """``x_T`` if it is ``None`` or a finite floating-point tensor of at least two dimensions.

    Raises:
        TypeError: not a tensor (convert with ``torch.as_tensor``).
        ValueError: not floating point, fewer than two dimensions, or NaN/inf entries.
    """
    if x_T is None:
        return None
    if not isinstance(x_T, Tensor):
        raise TypeError(f"x_T must be a torch.Tensor of shape (B, *D), got {type(x_T).__name__}; "
                        "convert it with torch.as_tensor(x_T, dtype=torch.float32)")
    if not x_T.dtype.is_floating_point:
        raise ValueError(f"x_T has dtype {x_T.dtype}; it must have a floating-point dtype (x_T.float())")
    if x_T.ndim < 2:
        raise ValueError(f"x_T must have shape (B, *D): a batch size and at least one data dimension, got "
                         f"{tuple(x_T.shape)} (one-dimensional samples: x_T[:, None])")
    if x_T.numel() == 0:
        raise ValueError(f"x_T must have shape (B, *D) with positive sizes, got {tuple(x_T.shape)}")
    if not bool(torch.isfinite(x_T).all()):
        bad = int((~torch.isfinite(x_T)).sum())
        raise ValueError(f"x_T has {bad} NaN/inf entries (of {x_T.numel()}); the initial state must be finite")
    return x_T


def check_score(score: Any) -> None:
    """Raise `TypeError` unless ``score`` is callable as ``score(x: (B, *D), t: (B,)) -> (B, *D)``.

    Catches a ``None`` or a tensor passed where the score function goes (e.g. a model's output
    instead of the model) before any work is done, with the expected signature in the message.
    """
    if not callable(score):
        raise TypeError(
            f"score must be a callable score(x: (B, *D), t: (B,)) -> (B, *D), got {type(score).__name__}"
            + (" (pass the model or target.score_fn(sde), not its output)" if isinstance(score, Tensor) else "")
        )
