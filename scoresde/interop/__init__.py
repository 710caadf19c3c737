"""Interop with other libraries: k-diffusion denoisers, torchsde, diffusers models.

* `score_from_denoiser` / `denoiser_from_score` / `sample_sigmas`: k-diffusion's
  ``D(x, sigma)`` convention both ways (module `scoresde.interop.kdiffusion`), and our solvers
  over an explicit sigma list (module `scoresde.interop.sigma_lists`).
* `ReverseTorchSDE`: our reverse dynamics for ``torchsde.sdeint``
  (module `scoresde.interop.torchsde_sde`).
* `unet_score` / `DiffusersScore` / `sde_from_scheduler`: a diffusers ``UNet2DModel`` and
  its scheduler config as an SDE and a score (module `scoresde.interop.diffusers_unet`).

None of these modules imports k-diffusion or diffusers; torchsde is a core dependency.
"""

from .diffusers_unet import PREDICTION_TYPES, DiffusersScore, sde_from_scheduler, unet_score
from .kdiffusion import denoiser_from_score, load_k_diffusion_sampling, score_from_denoiser
from .sigma_lists import sample_sigmas, times_from_sigmas
from .torchsde_sde import ReverseTorchSDE, TorchsdeBrownianNoise

__all__ = [
    "PREDICTION_TYPES",
    "DiffusersScore",
    "ReverseTorchSDE",
    "TorchsdeBrownianNoise",
    "denoiser_from_score",
    "load_k_diffusion_sampling",
    "sample_sigmas",
    "score_from_denoiser",
    "sde_from_scheduler",
    "times_from_sigmas",
    "unet_score",
]
