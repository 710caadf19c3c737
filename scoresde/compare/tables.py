"""Text tables of comparison records (no plotting library is imported here)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["markdown_table", "summarize", "HEADERS", "ratio_and_error"]

HEADERS: dict[str, str] = {
    "sliced_w2": "sliced W2", "mmd": "MMD²", "energy": "energy", "coverage": "mode coverage",
    "weight_error": "mode-weight err", "outlier_fraction": "outliers",
}
"""Column titles of the metrics. `coverage` (the fraction of modes with samples) is titled
"modes covered" and printed as `k/K` when the number of modes `K` is known."""


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def summarize(
    records: Iterable[Mapping[str, Any]], values: Sequence[str], *, keys: Sequence[str] = ("solver", "budget"),
) -> list[dict[str, Any]]:
    """Group `records` by `keys` and give `mean`/`std` (over seeds) of each of `values`.

    Records whose `status` is not `"ok"` are skipped; non-finite values are ignored. Each
    output row has the `keys`, `n` (records in the group) and `<value>_mean` / `<value>_std`
    (sample standard deviation, 0 for one seed), in order of first appearance.
    """
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in records:
        if r.get("status", "ok") != "ok":
            continue
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    rows = []
    for key, group in groups.items():
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["n"] = len(group)
        for v in values:
            vals = [float(r[v]) for r in group if _finite(r.get(v))]
            row[f"{v}_mean"] = math.fsum(vals) / len(vals) if vals else float("nan")
            row[f"{v}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        rows.append(row)
    return rows


def _fmt(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.3g} ± {std:.2g}" if std > 0 else f"{mean:.3g}"


def _fmt_modes(mean: float, std: float, n_modes: int) -> str:
    """Coverage fraction as a count of modes, `k/K` (`k` is a mean over seeds when not whole)."""
    if not math.isfinite(mean):
        return "–"
    k, s = mean * n_modes, std * n_modes
    text = f"{round(k)}/{n_modes}" if abs(k - round(k)) < 1e-9 else f"{k:.3g}/{n_modes}"
    return f"{text} ± {s:.2g}" if s > 0 else text


def _metric_cell(metric: str, mean: float, std: float, n_modes: int | None) -> str:
    if metric == "coverage" and n_modes is not None:
        return _fmt_modes(mean, std, n_modes)
    return _fmt(mean, std)


def ratio_and_error(
    mean: float, std: float, seeds: int, floor: tuple[float, float], floor_repeats: int | None,
) -> tuple[float, float | None]:
    """`r = mean / floor_mean` and its standard error, or `None` where it is not measured.

    With `k = seeds` values of spread `std` and a floor of `R = floor_repeats` pairs
    (`floor = (m_f, s_f)`), first-order error propagation gives

        se(r) = r * sqrt( (std / (sqrt(k) * mean))^2 + (s_f / (sqrt(R) * m_f))^2 ).

    One seed has no measured spread, and an unknown `R` (or `R = 1`) no floor error: then `None`.
    """
    m_f, s_f = floor
    r = mean / m_f
    if seeds < 2 or floor_repeats is None or floor_repeats < 2 or not math.isfinite(r) or mean == 0:
        return r, None
    rel2 = (std / (math.sqrt(seeds) * mean)) ** 2 + (s_f / (math.sqrt(floor_repeats) * m_f)) ** 2
    return r, abs(r) * math.sqrt(rel2)


def _ratio_cell(r: float, err: float | None) -> str:
    if not math.isfinite(r):
        return "–"
    return f"{r:.2f} ± {err:.2f}" if err is not None else f"{r:.2f}"


def _floor_ratio_cell(floor: tuple[float, float], floor_repeats: int | None) -> str:
    """`1.00 ± s_f / (sqrt(R) m_f)`: the floor's relative standard error (`1.00` when `R` is unknown or 1)."""
    m_f, s_f = floor
    if floor_repeats is None or floor_repeats < 2:
        return _ratio_cell(1.0, None)
    return _ratio_cell(1.0, s_f / (math.sqrt(floor_repeats) * m_f))


def _notes(records: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Warnings below the table: rows averaging fewer seeds, wall times of mixed thread counts."""
    notes = []
    most = max((r["n"] for r in rows), default=0)
    short = [f"{r['solver']} {r['budget']}" for r in rows if r["n"] < most]
    if short:
        notes.append(f"Rows with fewer seeds than {most} average only the seeds that succeeded: "
                     f"{', '.join(short)}.")
    pilots = [r for r in records if _finite(r.get("stat_pilot_nfe")) and float(r["stat_pilot_nfe"]) > 0]
    if pilots:
        nfe = max(int(float(r["stat_pilot_nfe"])) for r in pilots)
        batch = max((int(float(r["stat_pilot_batch"])) for r in pilots if _finite(r.get("stat_pilot_batch"))), default=0)
        secs = sum(float(r["stat_pilot_seconds"]) for r in pilots if _finite(r.get("stat_pilot_seconds")))
        notes.append(f"grid='auto': the pilot solve that shapes the grid ({nfe} NFE on {batch} samples, "
                     f"{secs:.2f} s in all; computed once per score and SDE and cached) is not in the NFE "
                     "and time columns, which count the sampling run alone.")
    threads = sorted({int(r["threads"]) for r in records if _finite(r.get("threads"))})
    if len(threads) > 1:
        notes.append(f"Wall times were measured with different torch thread counts ({', '.join(map(str, threads))}), "
                     "e.g. in different sessions of a resumed run: they do not compare across rows.")
    return notes


def markdown_table(
    records: Sequence[Mapping[str, Any]],
    floors: Mapping[str, tuple[float, float]],
    metrics: Sequence[str],
    *,
    reference: str = "exact",
    n_modes: int | None = None,
    floor_repeats: int | None = None,
) -> str:
    """Markdown table of mean ± std over seeds per (solver, budget), then the noise floor.

    Args:
        records: flat records (keys `solver`, `budget_kind`, `budget`, `nfe`, `seconds`,
            `status`, `error` and one per metric).
        floors: metric -> `(mean, std)` between two independent reference sets.
        metrics: the metric columns, in order.
        reference: name of the reference law; the floor row is labelled
            `"<reference> vs <reference>"` (`"exact"` for exact mixture samples, `"data"` for
            a data source).
        n_modes: number of mixture modes `K`; the coverage column is then titled
            "modes covered" and shows `k/K`, else "mode coverage" with the fraction.
        floor_repeats: exact pairs behind each floor. When given, `SW2 / floor` carries its
            standard error (`ratio_and_error`; rows of two or more seeds) and the floor row
            the floor's own relative standard error, `1.00 ± s_f / (sqrt(R) m_f)`.

    Returns:
        The table; failed cells and notes (rows with fewer seeds, mixed thread counts) are
        listed below it. Columns: solver, budget, NFE, each metric (mean ± std over seeds),
        `SW2 / floor` (when sliced W2 is among the metrics), wall time [s], seeds.
    """
    rows = summarize(records, ["nfe", "seconds", *metrics], keys=("solver", "budget_kind", "budget"))
    ratio = "sliced_w2" in metrics and "sliced_w2" in floors and floors["sliced_w2"][0] > 0
    titles = dict(HEADERS, **({"coverage": "modes covered"} if n_modes is not None else {}))
    head = ["solver", "budget", "NFE", *[titles.get(m, m) for m in metrics]]
    head += ["SW2 / floor"] if ratio else []
    head += ["time [s]", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        kind = r["budget_kind"]
        budget = {"steps": f"{r['budget']} steps", "tol": f"tol {r['budget']:g}"}.get(kind, "adaptive")
        cells = [r["solver"], budget, _fmt(r["nfe_mean"], r["nfe_std"])]
        cells += [_metric_cell(m, r[f"{m}_mean"], r[f"{m}_std"], n_modes) for m in metrics]
        if ratio:
            cells.append(_ratio_cell(*ratio_and_error(r["sliced_w2_mean"], r["sliced_w2_std"], r["n"],
                                                      floors["sliced_w2"], floor_repeats)))
        cells += [f"{r['seconds_mean']:.3g}", str(r["n"])]
        lines.append("| " + " | ".join(cells) + " |")
    floor_cells = ["*noise floor*", f"{reference} vs {reference}", "–"]
    floor_cells += [_metric_cell(m, *floors[m], n_modes) if m in floors else "–" for m in metrics]
    floor_cells += [_floor_ratio_cell(floors["sliced_w2"], floor_repeats)] if ratio else []
    floor_cells += ["–", "–"]
    lines.append("| " + " | ".join(floor_cells) + " |")
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        lines.append("")
        lines.append(f"{len(failed)} failed cell(s):")
        lines += [f"- {r['solver']} budget {r['budget']} seed {r['seed']}: {r['error']}" for r in failed]
    notes = _notes(records, rows)
    if notes:
        lines.append("")
        lines += notes
    return "\n".join(lines)
