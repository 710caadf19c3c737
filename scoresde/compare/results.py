"""`ComparisonResult`: the records of one comparison, with its table, figures and files."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import json_default, records_to_csv, write_atomic
from .tables import markdown_table

__all__ = ["ComparisonResult"]


@dataclass
class ComparisonResult:
    """Records of one comparison, the metrics' noise floors, and how much was recomputed.

    Attributes:
        problem: the problem's name.
        records: one flat dict per cell (keys `solver`, `budget_kind`, `budget`, `seed`,
            `nfe`, `seconds`, `status`, `error` and one per metric).
        floors: metric -> `(mean, std)` between independent reference sample sets of size `n`.
        metrics: the metric names recorded.
        computed, reused: cells computed by this call / taken from `out`.
        files: paths written by `save` (when `out` was given).
        reference: name of the reference law (`"exact"` or `"data"`), for the floor row.
        n_modes: number of mixture modes when the reference is a mixture (coverage as `k/K`).
        floor_repeats: exact-vs-exact pairs behind each floor (its standard error is
            `std / sqrt(floor_repeats)`); `None` when not known.
        caption: what was measured (SDE, samples per cell, seeds, reference, what ± and the
            time column mean), written under the heading of `table.md`; `None` when not known.
    """

    problem: str
    records: list[dict[str, Any]]
    floors: dict[str, tuple[float, float]]
    metrics: list[str]
    computed: int = 0
    reused: int = 0
    files: dict[str, Path] = field(default_factory=dict)
    reference: str = "exact"
    n_modes: int | None = None
    floor_repeats: int | None = None
    caption: str | None = None

    def table(self, metrics: Sequence[str] | None = None) -> str:
        """Markdown table: mean ± std over seeds per (solver, budget); noise floor last."""
        return markdown_table(self.records, self.floors, metrics or self.metrics,
                              reference=self.reference, n_modes=self.n_modes, floor_repeats=self.floor_repeats)

    def plot(self, metrics: Sequence[str] | None = None, *, x: str = "nfe", ax: Any = None) -> Any:
        """Metric-vs-`x` curves (one panel per metric); returns the figure."""
        from .figures import comparison_figure

        return comparison_figure(self.records, metrics or self.metrics[:2], x=x, floors=self.floors,
                                 ax=ax, title=self.problem)

    def save(self, out: str | os.PathLike[str], *, plots: bool = True) -> dict[str, Path]:
        """Write `results.json`, `results.csv`, `table.md` and (`plots`) the curves."""
        out = Path(out)
        files = {
            "json": write_atomic(out / "results.json", json.dumps(
                {"problem": self.problem, "metrics": self.metrics, "floors": self.floors,
                 "floor_repeats": self.floor_repeats, "caption": self.caption, "records": self.records},
                indent=1, default=json_default)),
            "csv": write_atomic(out / "results.csv", records_to_csv(self.records)),
            "table": write_atomic(out / "table.md", f"## {self.problem}\n\n"
                                  + (f"{self.caption}\n\n" if self.caption else "") + f"{self.table()}\n"),
        }
        if plots and any(r["status"] == "ok" for r in self.records):
            from .figures import save_curves

            files.update(save_curves(self.records, self.metrics[:2], self.floors, out, self.problem))
        self.files = files
        return files
