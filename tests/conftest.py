"""Suite-wide settings: under pytest-xdist (``-n auto``), each worker's torch takes its share
of the cores, so that the workers do not oversubscribe them."""

from __future__ import annotations

import os

import torch

_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
if _workers > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))
