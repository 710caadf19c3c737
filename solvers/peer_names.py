"""Other libraries' names for the samplers registered here, for the unknown-name message.

A user coming from k-diffusion (``sample_dpmpp_2m``), diffusers (``DPMSolverMultistepScheduler``)
or Song et al.'s code (``langevin``) types the name they know. `peer_hint` names the
registered solver that takes the same steps (or the nearest one, said so), so the error for an
unknown name points to it. Names are matched after folding case, separators, ``++`` (``pp``), a
``sample_`` prefix and a ``Scheduler`` suffix.
"""

from __future__ import annotations

import re

__all__ = ["PEER_NAMES", "folded_name", "peer_hint"]

PEER_NAMES: dict[str, tuple[str, tuple[str, ...]]] = {
    # k-diffusion's sample_* functions (Karras et al. 2022; Lu et al. 2022)
    "euler": ("k-diffusion's sample_euler / diffusers' EulerDiscreteScheduler: Euler steps in sigma on the "
              "probability-flow ODE, which are DDIM's steps (Euler in t: ode_euler)", ("ddim", "ode_euler")),
    "eulera": ("Euler ancestral steps", ("ancestral",)),
    "heun": ("k-diffusion's sample_heun / diffusers' HeunDiscreteScheduler: EDM's Heun steps in sigma "
             "(Heun in t: ode_heun)", ("edm_heun", "ode_heun")),
    "eulerancestral": ("k-diffusion's sample_euler_ancestral / diffusers' EulerAncestralDiscreteScheduler: "
                       "ancestral steps", ("ancestral",)),
    "dpm2": ("k-diffusion's sample_dpm_2: a second-order single step (nearest here: DPM-Solver-2)",
             ("dpm_solver_2",)),
    "dpmpp2m": ("DPM-Solver++(2M)", ("dpmpp_2m",)),
    "dpmpp3m": ("DPM-Solver++(3M)", ("dpmpp_3m",)),
    "dpmpp2msde": ("k-diffusion's sample_dpmpp_2m_sde: SDE-DPM-Solver++(2M)", ("sde_dpmpp_2m",)),
    "dpmpp2msdekarras": ("SDE-DPM-Solver++(2M) on a Karras grid (here on the log-SNR grid unless grid='karras')",
                         ("sde_dpmpp_2m",)),
    "dpmpp3msde": ("k-diffusion's sample_dpmpp_3m_sde, a third-order SDE multistep (nearest here: the "
                   "second-order SDE-DPM-Solver++(2M))", ("sde_dpmpp_2m",)),
    "sdedpmsolverpp": ("diffusers' algorithm_type 'sde-dpmsolver++': SDE-DPM-Solver++(2M)", ("sde_dpmpp_2m",)),
    "lms": ("k-diffusion's sample_lms: linear multistep", ("lms",)),
    "dpm2a": ("k-diffusion's sample_dpm_2_ancestral (nearest here: ancestral steps)", ("ancestral",)),
    "dpmsolverpp": ("DPM-Solver++ (Lu et al. 2022): multistep of order 2 or 3", ("dpmpp_2m", "dpmpp_3m")),
    "dpmsolver": ("DPM-Solver (Lu et al. 2022): single steps of order 1-3",
                  ("dpm_solver_1", "dpm_solver_2", "dpm_solver_3")),
    # diffusers' schedulers
    "ddim": ("diffusers' DDIMScheduler", ("ddim",)),
    "lmskarras": ("linear multistep on a Karras grid (the default grid of lms here)", ("lms",)),
    "dpmpp2mkarras": ("DPM-Solver++(2M) on a Karras grid (here on the log-SNR grid unless grid='karras')",
                      ("dpmpp_2m",)),
    "ddpm": ("DDPM's ancestral sampling (diffusers' DDPMScheduler)", ("ancestral",)),
    "dpmsolvermultistep": ("diffusers' DPMSolverMultistepScheduler (algorithm_type dpmsolver++; "
                           "sde-dpmsolver++ is sde_dpmpp_2m)", ("dpmpp_2m", "dpmpp_3m")),
    "dpmsolversinglestep": ("diffusers' DPMSolverSinglestepScheduler", ("dpm_solver_2", "dpm_solver_3")),
    "unipcmultistep": ("diffusers' UniPCMultistepScheduler (a UniPC-style corrector on DPM-Solver++)", ("unipc",)),
    "eulerdiscrete": ("diffusers' EulerDiscreteScheduler: Euler in sigma, DDIM's steps", ("ddim",)),
    "eulerancestraldiscrete": ("diffusers' EulerAncestralDiscreteScheduler", ("ancestral",)),
    "heundiscrete": ("diffusers' HeunDiscreteScheduler", ("edm_heun",)),
    "lmsdiscrete": ("diffusers' LMSDiscreteScheduler", ("lms",)),
    "plms": ("PLMS, PNDM's pseudo linear multistep (Liu et al. 2022; nearest here: linear multistep in sigma, "
             "or DPM-Solver++(3M))", ("lms", "dpmpp_3m")),
    "pndm": ("PNDM's pseudo linear multistep (Liu et al. 2022; nearest here: linear multistep in sigma, or "
             "DPM-Solver++(3M))", ("lms", "dpmpp_3m")),
    "deismultistep": ("diffusers' DEISMultistepScheduler (Zhang & Chen 2023; nearest here: the exponential "
                      "multistep integrators)", ("dpmpp_2m", "dpmpp_3m")),
    "deis": ("DEIS (Zhang & Chen 2023; nearest here: the exponential multistep integrators)",
             ("dpmpp_2m", "dpmpp_3m")),
    "dpmpp2sancestral": ("k-diffusion's sample_dpmpp_2s_ancestral (nearest here: the stochastic second-order "
                         "exponential integrator)", ("sde_dpmpp_2m",)),
    "dpmpp2sa": ("DPM++ 2S ancestral (nearest here: the stochastic second-order exponential integrator)",
                 ("sde_dpmpp_2m",)),
    "dpmppsde": ("k-diffusion's sample_dpmpp_sde (nearest here: SDE-DPM-Solver++(2M))", ("sde_dpmpp_2m",)),
    "dpmfast": ("k-diffusion's sample_dpm_fast: DPM-Solver's single steps of orders 1-3", ("dpm_solver_3",)),
    "dpmadaptive": ("k-diffusion's sample_dpm_adaptive: an adaptive ODE solver (nearest here: Dormand-Prince "
                    "with error control)", ("ode_dopri5", "ode_rk45")),
    "edm": ("EDM's sampler (Karras et al. 2022): Heun steps on its sigma grid", ("edm_heun",)),
    "scoresdeve": ("diffusers' ScoreSdeVeScheduler: predictor-corrector", ("pc",)),
    # Song et al. (2021)'s sampler names
    "langevin": ("Langevin dynamics alone (Song & Ermon 2019's annealed Langevin)", ("annealed_langevin",)),
    "annealedlangevin": ("annealed Langevin dynamics", ("annealed_langevin",)),
    "em": ("Euler-Maruyama", ("euler_maruyama",)),
    "ode": ("the probability-flow ODE with an adaptive Runge-Kutta solver (Song et al. use SciPy's RK45)",
            ("ode_rk45", "ode_dopri5")),
    "predictorcorrector": ("predictor-corrector sampling", ("pc",)),
    "ancestralsampling": ("Song et al.'s ancestral sampling predictor", ("ancestral",)),
    "ancestralsamplingpredictor": ("Song et al.'s AncestralSamplingPredictor", ("ancestral",)),
    "reversediffusionpredictor": ("Song et al.'s ReverseDiffusionPredictor", ("reverse_diffusion",)),
    "eulermaruyamapredictor": ("Song et al.'s EulerMaruyamaPredictor", ("euler_maruyama",)),
    "langevincorrector": ("Song et al.'s LangevinCorrector, the corrector of predictor-corrector sampling",
                          ("pc",)),
    "ald": ("Song et al.'s AnnealedLangevinDynamics corrector, alone", ("annealed_langevin",)),
    "annealedlangevindynamics": ("annealed Langevin dynamics", ("annealed_langevin",)),
    "rk45": ("SciPy's RK45 on the probability-flow ODE", ("ode_rk45",)),
}


def folded_name(name: str) -> str:
    """``"sample_dpmpp_2m_sde"`` -> ``"dpmpp2msde"``, ``"DPMSolverMultistepScheduler"`` ->
    ``"dpmsolvermultistep"``, ``"k_euler_a"`` -> ``"eulera"``."""
    key = name.strip().lower().replace("++", "pp")
    key = key.removeprefix("k_")  # the k-diffusion prefix of some front ends: k_lms, k_euler_a
    key = re.sub(r"[^a-z0-9]", "", key)
    return key.removeprefix("sample").removesuffix("scheduler")


def peer_hint(name: object) -> str:
    """``"'X' is <what>; here: a, b"`` for another library's name of a registered sampler, else ``""``."""
    if not isinstance(name, str):
        return ""
    entry = PEER_NAMES.get(folded_name(name))
    if entry is None:
        return ""
    what, ours = entry
    return f"{name!r} is {what}; here: {', '.join(ours)}"
