"""Help formatting shared by the ``demo``, ``compare`` and ``plot`` commands, and `output_path`."""

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
