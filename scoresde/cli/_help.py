"""Help formatting shared by the ``demo``, ``compare`` and ``plot`` commands, `output_path`, and
`targets_2d` (the ``--target`` choices of the commands that draw the plane)."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends ``(default: ...)`` to an option's help, except for unset (None/False) defaults.

    List defaults print comma-separated, as they are typed on the command line.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        if isinstance(default, (list, tuple)):
            default = ",".join(str(v) for v in default)
        return f"{text} (default: {default})"


def output_path(text: str) -> str:
    """argparse type of every ``--out``: a non-empty path (``''`` would silently mean the current folder).

    Raises:
        argparse.ArgumentTypeError: ``text`` is empty or only whitespace.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; name a file or folder (an empty path would write into the current folder)")
    return text


def targets_2d() -> list[str]:
    """Names of the exact-target presets of 2-D data (``scoresde.targets.PRESETS`` with ``D = 2``).

    The ``--target`` choices of ``plot`` and ``demo``: their figures (paths, densities,
    fields) live on the plane, so a 16- or 32-dimensional mixture (``high_dim_*``,
    ``sharp_32d``) is not offered rather than refused after sampling or drawn as an unlabelled
    projection.
    """
    from ..targets import PRESETS

    return [name for name, make in PRESETS.items() if make().dim == 2]
