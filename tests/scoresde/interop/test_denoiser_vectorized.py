"""`denoiser_from_score` maps each noise level of a batch to its time without a Python loop over
the batch (distinct levels through ``torch.unique``, then a gather); the results are bit-identical
to the per-element mapping it replaced, and the per-sigma cache keeps its bound."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

import scoresde as sd
import scoresde.interop.kdiffusion as kdmod
from scoresde.interop import denoiser_from_score
from solvers.utils import append_dims

F64 = torch.float64


def _reference(score: Callable[[Tensor, Tensor], Tensor], sde, x_edm: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """The per-element mapping (the code before vectorizing) on an empty cache: ``(D, t)``.

    The times of the sorted distinct positive levels come from one `_times` call, as there;
    then every element looks its level up in a Python loop.
    """
    sig = torch.as_tensor(sigma, dtype=F64).reshape(-1)
    if sig.numel() == 1:
        sig = sig.expand(x_edm.shape[0])
    values = sig.tolist()
    levels = sorted(set(values) - {0.0})
    known = dict(zip(levels, kdmod._times(sde, torch.tensor(levels, dtype=F64)).tolist(), strict=True)) if levels else {}
    xw = x_edm.to(kdmod.work_dtype(x_edm.dtype))
    t = torch.tensor([known.get(v, sde.eps) for v in values], dtype=xw.dtype)
    alpha, s = sde.marginal_coeffs(t)
    a, s = append_dims(alpha, xw.ndim), append_dims(s, xw.ndim)
    x = a * xw
    d = (x + s * s * score(x, t).to(xw.dtype)) / a
    zero = append_dims(sig == 0, xw.ndim)
    return torch.where(zero, xw, d).to(x_edm.dtype), t


def _levels(sde, n: int, generator: torch.Generator) -> Tensor:
    """``n`` levels spread log-uniformly inside the SDE's range of ``sigma_edm``."""
    lo, hi = kdmod._sigma_range(sde)
    u = torch.rand(n, generator=generator, dtype=F64)
    return torch.exp(torch.log(torch.tensor(lo * 1.01, dtype=F64)) * (1 - u) + torch.log(torch.tensor(hi * 0.99, dtype=F64)) * u)


def _batches(sde, b: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(3)
    few = _levels(sde, 4, g)
    mixed = torch.cat([few, torch.zeros(1, dtype=F64)])[torch.randint(0, 5, (b,), generator=g)]
    one = few[1]
    return {
        "several distinct, repeated, and 0": mixed,
        "one level repeated (a sampler's sigma * s_in)": one * torch.ones(b, dtype=F64),
        "one level as a 0-d tensor": one.clone(),
        "one level as shape (1,)": one.reshape(1),
        "all zero": torch.zeros(b, dtype=F64),
        "per-sample levels (uncached path)": _levels(sde, b, g),
        "per-sample levels with repeats": _levels(sde, 12, g)[torch.randint(0, 12, (b,), generator=g)],
    }


@pytest.mark.parametrize("sde_name", ["edm", "vp"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_bit_identical_to_the_per_element_mapping(sde_name: str, dtype: torch.dtype) -> None:
    sde = sd.EDMSDE() if sde_name == "edm" else sd.VPSDE()
    exact = sd.targets.eight_gaussians().score_fn(sde)
    seen: list[Tensor] = []

    def score(x: Tensor, t: Tensor) -> Tensor:
        seen.append(t)
        return exact(x, t)

    b = 64
    x = torch.randn(b, 2, generator=torch.Generator().manual_seed(0), dtype=F64).to(dtype)
    for name, sigma in _batches(sde, b).items():
        want, t_want = _reference(exact, sde, x, sigma)
        den = denoiser_from_score(score, sde)  # empty cache, as the reference
        for call in ("first (bisected)", "second (cached)"):
            seen.clear()
            got = den(x, sigma)
            assert got.dtype == x.dtype and got.shape == x.shape
            assert torch.equal(got, want), f"{name}, {call}: {(got - want).abs().max()}"
            (t_got,) = seen  # all zero too: the score runs at eps (its output is not used)
            assert t_got.dtype == t_want.dtype and t_got.shape == (b,) and t_got.is_contiguous()
            assert torch.equal(t_got, t_want), f"{name}, {call}: times differ"


@pytest.mark.parametrize("sde_name", ["edm", "vp"])
def test_a_sampler_run_after_training_calls_gives_the_same_values(sde_name: str) -> None:
    """Mixed use of one denoiser (sampler levels, per-sample levels, both in one batch)."""
    sde = sd.EDMSDE() if sde_name == "edm" else sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(sde)
    den = denoiser_from_score(score, sde)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 2, generator=g, dtype=F64)
    sampler = _levels(sde, 10, g).sort(descending=True).values
    for s in sampler:
        torch.testing.assert_close(den(x, s * torch.ones(32, dtype=F64)), _reference(score, sde, x, s)[0], rtol=0, atol=0)
    per_sample = _levels(sde, 32, g)
    torch.testing.assert_close(den(x, per_sample), _reference(score, sde, x, per_sample)[0], rtol=0, atol=0)
    both = torch.where(torch.arange(32) % 2 == 0, sampler[3], per_sample)  # cached and new levels
    torch.testing.assert_close(den(x, both), _reference(score, sde, x, both)[0], rtol=0, atol=0)


def test_no_python_loop_over_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sampler's call converts only its distinct levels to Python floats, not the batch."""
    sde = sd.VPSDE()
    den = denoiser_from_score(sd.targets.eight_gaussians().score_fn(sde), sde)
    b = 4096
    x = torch.randn(b, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    sizes: list[int] = []
    orig = Tensor.tolist
    monkeypatch.setattr(Tensor, "tolist", lambda self: (sizes.append(self.numel()), orig(self))[1])
    den(x, torch.full((b,), 2.0, dtype=F64))
    levels = torch.tensor([0.5, 2.0, 7.0], dtype=F64)
    den(x, levels[torch.arange(b) % 3])
    assert sizes and max(sizes) <= 3, sizes


def test_cache_bound_holds_with_many_levels() -> None:
    sde = sd.EDMSDE()
    den = denoiser_from_score(sd.targets.eight_gaussians().score_fn(sde), sde)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(16, 2, generator=g, dtype=F64)
    for s in _levels(sde, kdmod.SIGMA_CACHE_SIZE + 100, g):  # one new level per call: all cached
        den(x, s * torch.ones(16, dtype=F64))
    for _ in range(5):  # per-sample levels: none cached
        den(x, _levels(sde, 16, g))
    cells = [c.cell_contents for c in den.__closure__ or ()]
    cells += [c.cell_contents for f in cells if callable(f) for c in getattr(f, "__closure__", None) or ()]
    caches = [c for c in cells if isinstance(c, dict)]
    assert caches and max(len(c) for c in caches) == kdmod.SIGMA_CACHE_SIZE
