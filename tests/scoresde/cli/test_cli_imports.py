"""Start-up cost: building the ``scoresde`` parser does not import matplotlib, and ``import solvers``
does not import ``scipy.integrate`` (only the SciPy steppers need it, imported at first use).

Each check runs in a fresh interpreter on the code of the checkout this file belongs to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run([sys.executable, *(["-c", code] if code else []), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _loaded_after(statements: str, modules: list[str]) -> list[str]:
    code = (f"import sys\n{statements}\n"
            f"print(sorted(m for m in {modules!r} if m in sys.modules))\n"
            "import scoresde, solvers\n"
            f"assert scoresde.__file__.startswith({str(ROOT)!r}), scoresde.__file__\n")
    done = _python(code)
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.strip().splitlines()[-1])  # noqa: S307 - a list literal printed above


def test_building_the_parser_imports_no_matplotlib() -> None:
    loaded = _loaded_after("import scoresde.cli\nscoresde.cli.build_parser()", ["matplotlib", "scipy.integrate"])
    assert "matplotlib" not in loaded


def test_version_imports_no_matplotlib() -> None:
    code = ("import sys\nfrom scoresde.cli import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print('matplotlib' in sys.modules)\n")
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_import_solvers_imports_no_scipy_integrate() -> None:
    assert _loaded_after("import solvers", ["scipy.integrate"]) == []


def test_scipy_steppers_still_load_on_use() -> None:
    code = ("import sys, torch, solvers\n"
            "from solvers.scipy_ode import SCIPY_METHODS, solve_ivp_torch\n"
            "s = solvers.ScipyODE('DOP853')\n"
            "assert s.order == 8.0 and 'scipy.integrate' not in sys.modules\n"
            "y, info = solve_ivp_torch(lambda t, y: -y, torch.ones(3, dtype=torch.float64), 0.0, 1.0)\n"
            "assert abs(float(y[0]) - 0.36787944) < 1e-4, y\n"
            "import scipy.integrate\n"
            "assert SCIPY_METHODS['RK45'] == (scipy.integrate.RK45, 5)\n"
            "assert dict(SCIPY_METHODS) == {'RK45': (scipy.integrate.RK45, 5), "
            "'DOP853': (scipy.integrate.DOP853, 8), 'RK23': (scipy.integrate.RK23, 3)}\n"
            "print('ok')\n")
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_unknown_scipy_method_is_refused_with_the_valid_names() -> None:
    import solvers
    from solvers.scipy_ode import solve_ivp_torch

    message = (r"unknown scipy method 'rk45x'; did you mean 'RK45'\? valid methods: RK45, DOP853, RK23 "
               r"\(implicit methods need a Jacobian")
    with pytest.raises(ValueError, match=message):
        solvers.ScipyODE("rk45x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        solve_ivp_torch(lambda t, y: y, torch.ones(2, dtype=torch.float64), 0.0, 1.0, method="rk45x")  # type: ignore[arg-type]


def test_plot_help_lists_the_figures() -> None:
    from scoresde.plotting.report import FIGURES

    done = _python("", "-m", "scoresde", "plot", "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "--what" in text
    for name in FIGURES:
        assert name in text, name
    assert f"figures to write, among {', '.join(FIGURES)}" in text


def test_parser_figure_names_are_the_plotting_ones() -> None:
    from scoresde.cli import build_parser
    from scoresde.plotting.report import FIGURES

    parser = build_parser()
    args = parser.parse_args(["plot", "--out", "unused"])
    assert tuple(args.what) == tuple(FIGURES)
