"""The compare package's seams: tables without matplotlib, injected checkpoint loading, labels."""

from __future__ import annotations

import subprocess
import sys

import torch

from scoresde import compare
from scoresde.compare.tables import markdown_table
from scoresde.sde import VPSDE
from scoresde.targets import get_target


def _records(coverages: list[float]) -> list[dict]:
    return [{"solver": "s", "budget_kind": "steps", "budget": 5, "seed": i, "status": "ok",
             "nfe": 5, "seconds": 0.1, "coverage": c} for i, c in enumerate(coverages)]


def test_writing_a_table_imports_neither_matplotlib_nor_training():
    code = ("import sys; from scoresde import compare; "
            "compare.markdown_table([], {}, ['sliced_w2']); "
            "print('matplotlib' in sys.modules, 'scoresde.train' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_coverage_is_a_count_of_modes_when_k_is_known():
    table = markdown_table(_records([1.0, 0.875]), {"coverage": (1.0, 0.0)}, ["coverage"], n_modes=8)
    head, _, row, floor = table.splitlines()
    assert "| modes covered |" in head
    assert "| 7.5/8 ± 0.71 |" in row  # (8 + 7) / 2 modes, std of (8, 7) = 0.707
    assert "| 8/8 |" in floor
    # Without K, the column is titled as the fraction it is.
    assert "| mode coverage |" in markdown_table(_records([1.0]), {}, ["coverage"]).splitlines()[0]


def test_floor_row_names_the_reference():
    assert "| *noise floor* | exact vs exact |" in markdown_table(_records([1.0]), {}, ["coverage"])
    table = markdown_table(_records([1.0]), {}, ["coverage"], reference="data")
    assert "| *noise floor* | data vs data |" in table


class _Data:
    """A data source that is not a mixture: the reference is 'data'."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, 3, generator=generator)


def test_checkpoint_problem_uses_the_injected_loader(tmp_path):
    sde = VPSDE()
    mix = get_target("eight_gaussians")
    calls = []

    def loader(path, *, ema):
        calls.append((str(path), ema))
        data = mix if len(calls) == 1 else _Data()
        return compare.LoadedCheckpoint(mix.score_fn(sde), sde, "mine", data)

    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    p = compare.Problem.from_checkpoint(ckpt, loader=loader, ema=False)
    assert calls == [(str(ckpt), False)] and p.mixture is mix and p.reference == "exact"
    assert p.name == "mine (trained)" and p.data_shape == (2,)
    q = compare.Problem.from_checkpoint(ckpt, loader=loader)
    assert q.mixture is None and q.reference == "data" and q.data_shape == (3,)
