"""Scoring samples against the reference law: sample metrics, mode statistics, noise floors."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .. import metrics as _metrics
from ..mixture import GaussianMixture
from .problem import Problem

__all__ = ["METRICS", "MODE_METRICS", "Scorer", "REF_SEED_OFFSET", "DEFAULT_FLOOR_REPEATS"]

METRICS: tuple[str, ...] = ("sliced_w2", "mmd", "energy")
"""Sample-vs-sample metrics the harness knows (see `scoresde.metrics`)."""

MODE_METRICS: tuple[str, ...] = ("coverage", "weight_error", "outlier_fraction")
"""Mode statistics, recorded automatically when the problem has an exact mixture."""

DEFAULT_FLOOR_REPEATS = 32
"""Exact-vs-exact pairs per noise floor. The floor's standard error is `std / sqrt(repeats)`:
with 32 pairs about 5% of the sliced-W2 floor on eight_gaussians (n = 10,000: std 0.017 around
0.059), while 5 pairs left the mean off by 13% and the std off by a factor of 4 (the
`CombinedMetric` of `scoresde.quality` uses 32 as well)."""

REF_SEED_OFFSET = 1_000_003
"""Reference samples of seed `s` use seed `s + REF_SEED_OFFSET`: independent of the sampler's draws."""


def flat(x: Tensor) -> Tensor:
    """`(B, *D) -> (B, prod(D))`."""
    return x.reshape(x.shape[0], -1)


def reference_for(problem: Problem, n: int, seed: int) -> Tensor:
    """The `n` reference samples that a cell with seed `seed` is scored against."""
    # modulo 2^64, the range of a generator's seed: the largest seeds would overflow it
    return problem.sample_reference(n, torch.Generator().manual_seed((seed + REF_SEED_OFFSET) % 2**64))


def _mode_stat(mixture: GaussianMixture, key: str) -> Callable[[Tensor, Tensor], float]:
    """`(a, b) -> mode_stats(a)[key]`: a one-sample statistic in the two-sample floor's shape."""

    def stat(a: Tensor, b: Tensor) -> float:
        return float(_metrics.mode_stats(flat(a), mixture)[key])

    return stat


class Scorer:
    """Evaluates the chosen metrics of `x` against reference samples, with fixed settings.

    Args:
        problem: supplies the reference sampler and (optionally) the exact mixture.
        metric_names: subset of `METRICS`.
        n: sample size of every scored set (and of the noise floor's pairs).
        bandwidth_seed: seed of the reference draw that fixes the MMD bandwidths.

    Raises:
        ValueError: an unknown metric name.
    """

    def __init__(self, problem: Problem, metric_names: Sequence[str], n: int, bandwidth_seed: int = 0):
        unknown = [m for m in metric_names if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
        self.problem = problem
        self.names = list(metric_names)
        self.n = n
        rows = problem.reference_rows
        if rows is not None and 2 * n > rows:
            import warnings

            warnings.warn(
                f"n = {n} samples per set, but the data have {rows} rows: the data-vs-data noise floor "
                f"needs two disjoint sets of n rows and falls back to overlapping draws, which share "
                f"rows and read low (so ratios to the floor read high); use n <= {rows // 2}",
                UserWarning, stacklevel=2)
        self.bandwidths: tuple[float, ...] | None = None
        if "mmd" in self.names:
            # One fixed set of MMD bandwidths (from reference samples) for every cell and the
            # floor, so MMD values are comparable across solvers, budgets and seeds.
            g = torch.Generator().manual_seed(bandwidth_seed + 77)
            a = problem.sample_reference(min(n, 2048), g)
            self.bandwidths = tuple(_metrics.median_bandwidths(flat(a), flat(a)))

    def sample_metric(self, name: str) -> Callable[[Tensor, Tensor], float]:
        """`metric(x: (n, *D), y: (n, *D)) -> float` for a name of `METRICS`."""
        if name == "sliced_w2":
            return lambda x, y: float(_metrics.sliced_wasserstein(flat(x), flat(y), seed=0))
        if name == "mmd":
            return lambda x, y: float(_metrics.mmd(flat(x), flat(y), bandwidths=self.bandwidths))
        return lambda x, y: float(_metrics.energy_distance(flat(x), flat(y)))

    def evaluate(self, x: Tensor, ref: Tensor) -> dict[str, float]:
        """Every metric of `x` against `ref`, plus the mode statistics of `x` for a mixture."""
        out = {m: float(self.sample_metric(m)(x, ref)) for m in self.names}
        if self.problem.mixture is not None:
            stats = _metrics.mode_stats(flat(x), self.problem.mixture)
            out.update({k: float(stats[k]) for k in MODE_METRICS})
        return out

    def floors(self, repeats: int, seed: int = 0) -> dict[str, tuple[float, float]]:
        """Metric -> `(mean, std)` between `repeats` pairs of independent reference sets of size `n`
        (for a finite data set, two disjoint subsets of its rows: `Problem.sample_reference_pair`).

        `std` is the spread of one exact-vs-exact value (what a single seed's value is
        compared with); the floor mean's standard error is `std / sqrt(repeats)`.
        """
        floors = {}
        fn, pair = self.problem.sample_reference, self.problem.sample_reference_pair
        for m in self.names:
            floors[m] = _metrics.noise_floor(self.sample_metric(m), fn, self.n, repeats=repeats, seed=seed,
                                             sample_pair=pair)
        mix = self.problem.mixture
        if mix is not None:
            for k in MODE_METRICS:
                floors[k] = _metrics.noise_floor(_mode_stat(mix, k), fn, self.n, repeats=repeats, seed=seed,
                                                 sample_pair=pair)
        return floors
