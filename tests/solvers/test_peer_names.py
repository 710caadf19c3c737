"""Another library's sampler name gets an error that names ours (an outside study typed
``dpm_solver++`` and was told "did you mean 'dpm_solver_3'?", a single-step method)."""

from __future__ import annotations

import re

import pytest

import solvers
from solvers.peer_names import PEER_NAMES


@pytest.mark.parametrize(("name", "ours"), [
    ("dpm_solver++", "dpmpp_2m, dpmpp_3m"),
    ("DPMSolverMultistepScheduler", "dpmpp_2m, dpmpp_3m"),
    ("sample_dpmpp_2m_sde", "sde_dpmpp_2m"),
    ("k_euler_a", "ancestral"),
    ("EulerAncestralDiscreteScheduler", "ancestral"),
    ("UniPCMultistepScheduler", "unipc"),
    ("sample_heun", "edm_heun, ode_heun"),
    ("DDIMScheduler", "ddim"),
    ("langevin", "annealed_langevin"),
    # an outside pass: "did you mean 'dpmpp_3m'?" (an ODE solver) for the SDE sampler, no hint for the rest
    ("dpmpp_3m_sde", "sde_dpmpp_2m"),
    ("k_lms", "lms"),
    ("ReverseDiffusionPredictor", "reverse_diffusion"),
    ("LangevinCorrector", "pc"),
    ("sde-dpmsolver++", "sde_dpmpp_2m"),
    ("RK45", "ode_rk45"),
    # a second pass: Euler in sigma is DDIM's step; PLMS was told "did you mean 'lms'?"
    ("k_euler", "ddim, ode_euler"),
    ("EulerDiscreteScheduler", "ddim"),
    ("plms", "lms, dpmpp_3m"),
    ("PNDMScheduler", "lms, dpmpp_3m"),
    ("dpmpp_2s_ancestral", "sde_dpmpp_2m"),
    ("dpm_adaptive", "ode_dopri5, ode_rk45"),
    ("edm", "edm_heun"),
])
def test_a_peer_name_points_to_the_solver_here(name: str, ours: str) -> None:
    quoted = re.escape(repr(name))
    with pytest.raises(ValueError, match=rf"unknown solver {quoted}; {quoted} is .*; here: {ours}\. valid solvers"):
        solvers.get_solver(name)
    with pytest.raises(ValueError, match=rf"here: {ours}"):
        solvers.check_solver_names(["ddim", name])


@pytest.mark.parametrize(("name", "ours"), [("DPMPP-2M", "dpmpp_2m"), ("dpmpp3m", "dpmpp_3m"), ("sde_dpmpp2m", "sde_dpmpp_2m")])
def test_a_respelling_of_our_name_keeps_its_did_you_mean(name: str, ours: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown solver '{name}'; did you mean '{ours}'\?"):
        solvers.get_solver(name)


def test_every_peer_entry_names_registered_solvers() -> None:
    for what, ours in PEER_NAMES.values():
        assert what and ours and set(ours) <= set(solvers.available())
