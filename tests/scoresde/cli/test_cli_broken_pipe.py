"""`scoresde solvers | head -1` ended with "scoresde solvers: error: Broken pipe" on stderr (an
outside docs walkthrough): a reader that goes away is not an error of the command."""

from __future__ import annotations

import subprocess
import sys


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "scoresde", "solvers"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert first.startswith(b"euler_maruyama")
    assert "Broken pipe" not in err and "Traceback" not in err
    assert code in (0, 141)  # 141: as a command killed by SIGPIPE
