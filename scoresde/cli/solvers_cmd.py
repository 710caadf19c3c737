"""``scoresde solvers``: list every registered solver with its one-line summary."""

from __future__ import annotations

import argparse

import solvers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--names-only", action="store_true", help="print only the names")


def run(args: argparse.Namespace) -> int:
    summaries = solvers.summaries()
    width = max(len(n) for n in summaries)
    for name, line in summaries.items():
        print(name if args.names_only else f"{name:<{width}}  {line}")
    return 0
