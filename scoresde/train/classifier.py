"""Time-dependent (noise-conditional) classifiers for classifier guidance.

Song et al. 2021 (sec. 5, App. I.1) and Dhariwal & Nichol 2021 guide an unconditional score with
``grad_x log p_t(c | x_t)``, so the classifier must be trained on *noised* data: minimise the
cross-entropy ``E_{t, (x_0, c), z} [-log q(c | alpha(t) x_0 + sigma(t) z, t)]``, ``t ~ U(eps, T)``,
whose minimiser is the exact ``p_t(c | x_t)``. For a `GaussianMixture` with classes given per
component the exact ``p_t(c | x)`` is known (`scoresde.conditional.ClassMixture`), which is how
the recipe is tested.

    clf = train_classifier(*mixture_data(target, classes), sde, steps=2000, seed=0)
    score = ClassifierGuidance(target.score_fn(sde), clf, label=1, scale=1.0)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from solvers.protocol import DiffusionSDE

from ..models.embeddings import make_time_embedding
from .checkpoint import MAGIC, load_checkpoint, save_checkpoint
from .config import SDEConfig

__all__ = ["NoisyClassifier", "train_classifier", "mixture_data", "digits_data", "save_classifier", "load_classifier",
           "check_classifier_fits", "check_labels"]


class NoisyClassifier(nn.Module):
    """``(x: (B, *D), t: (B,)) -> (B, C)`` logits: an MLP on the flattened input and time features.

    Args:
        data_shape: ``*D``.
        n_classes: ``C >= 2``.
        width, depth: hidden width and number of hidden layers.
        emb_dim: time-feature size (sinusoidal, even).
    """

    def __init__(self, data_shape: Sequence[int], n_classes: int, *, width: int = 128, depth: int = 3,
                 emb_dim: int = 32) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a classifier needs n_classes >= 2, got {n_classes}")
        self.data_shape = tuple(int(s) for s in data_shape)
        self.n_classes = int(n_classes)
        self.trained_for: dict[str, Any] | None = None  # set by load_classifier (SDE and data)
        self.config = {"data_shape": list(self.data_shape), "n_classes": self.n_classes, "width": width,
                       "depth": depth, "emb_dim": emb_dim}
        self.embed = make_time_embedding("sinusoidal", emb_dim)
        layers: list[nn.Module] = [nn.Linear(math.prod(self.data_shape) + emb_dim, width), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"classifier expects samples of shape {self.data_shape}, got {tuple(x.shape[1:])}")
        h = torch.cat([x.reshape(x.shape[0], -1), self.embed(t).to(x)], dim=1)
        return self.net(h)


def mixture_data(target: Any, classes: Sequence[int] | None = None, n: int = 20_000, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` samples of a `GaussianMixture` and their class labels (component ``k`` -> ``classes[k]``)."""
    cls = torch.arange(target.n_components) if classes is None else torch.as_tensor(classes, dtype=torch.long)
    if cls.shape != (target.n_components,):
        raise ValueError(f"classes must give one class per component ({target.n_components}), got {tuple(cls.shape)}")
    check_labels(cls, "classes (--classes)")
    x, comp = target.sample_components(n, generator=torch.Generator().manual_seed(seed))
    return x, cls[comp]


def check_labels(labels: Tensor, what: str = "labels") -> int:
    """The number of classes ``C`` of ``labels``, which must be ``0 .. C-1`` with every class present.

    Raises:
        ValueError: a negative label, or a class below the largest label that never occurs
            (the classifier would have an output no data teaches); the message lists them.
    """
    values = sorted({int(v) for v in labels.flatten().tolist()})
    if not values:
        raise ValueError(f"{what}: no labels given")
    if values[0] < 0:
        raise ValueError(f"{what} must be 0 .. C-1, got the negative label {values[0]}")
    missing = sorted(set(range(values[-1] + 1)) - set(values))
    if missing:
        raise ValueError(
            f"{what} must be 0 .. C-1 with every class present; {values[-1] + 1} classes are implied by the "
            f"largest label {values[-1]}, but {', '.join(map(str, missing))} never occur(s): renumber the classes"
        )
    return values[-1] + 1


def digits_data() -> tuple[Tensor, Tensor]:
    """The 8x8 digits ``(1797, 1, 8, 8)`` in ``[-1, 1]`` and their labels 0..9."""
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    from ..data.images import digits

    return digits().images, torch.as_tensor(load_digits().target, dtype=torch.long)


def train_classifier(
    x: Tensor,
    labels: Tensor,
    sde: DiffusionSDE,
    *,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    log: Callable[[int, float], None] | None = None,
) -> NoisyClassifier:
    """Train a `NoisyClassifier` on noised data by cross-entropy (see the module docstring).

    Args:
        x: ``(N, *D)`` clean data; ``labels: (N,)`` classes ``0 .. C-1``, each present (`check_labels`).
        sde: the forward SDE whose noise levels the classifier must handle.
        steps, batch_size, lr: Adam with cosine decay.
        seed: initialisation, batches, times and noise.
        log: called as ``log(step, loss)`` every 200 steps.
    """
    if x.shape[0] != labels.shape[0] or labels.ndim != 1:
        raise ValueError(f"x {tuple(x.shape)} and labels {tuple(labels.shape)} must have the same length")
    if steps < 1 or batch_size < 1:
        raise ValueError("steps and batch_size must be positive")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    clf = NoisyClassifier(tuple(x.shape[1:]), check_labels(labels))
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    x = x.float()
    for step in range(steps):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=g)
        t = sde.eps + (sde.T - sde.eps) * torch.rand(batch_size, generator=g)
        alpha, sigma = sde.marginal_coeffs(t)
        shape = (batch_size,) + (1,) * (x.ndim - 1)
        xt = alpha.reshape(shape) * x[idx] + sigma.reshape(shape) * torch.randn(x[idx].shape, generator=g)
        loss = nn.functional.cross_entropy(clf(xt, t), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (step % 200 == 0 or step == steps - 1):
            log(step, loss.item())
    clf.sde = sde  # the noise levels it was trained at (ClassifierGuidance compares it with the score's)
    return clf.eval()


def save_classifier(clf: NoisyClassifier, path: str | Path, *, sde: object | None = None,
                    data: str | None = None) -> Path:
    """Write the classifier's config and weights to ``path`` (a ``.pt`` file), with what it was
    trained for (``sde``, the data's name) so that a mismatch can be reported when it is used.

    The file is a verified checkpoint (`scoresde.train.checkpoint.save_checkpoint`): written
    atomically, with a SHA-256 that `load_classifier` checks.
    """
    sde_config = None
    if sde is not None:
        recorded = SDEConfig.from_sde(sde)
        sde_config = {"name": recorded.name, "params": recorded.params}
    trained_for = {"sde": sde_config, "data": data}
    state = {"kind": "noisy_classifier", "config": clf.config, "state_dict": clf.state_dict(),
             "trained_for": trained_for}
    return save_checkpoint(state, path)


def load_classifier(path: str | Path) -> tuple[NoisyClassifier, int]:
    """Load a file written by `save_classifier`: ``(classifier, n_classes)``.

    The classifier's ``trained_for`` attribute holds the recorded SDE and data (``None`` for
    files written before they were recorded); `check_classifier_fits` compares them.

    Raises:
        ValueError: a folder, a missing, truncated, corrupt or foreign file (a score-model
            checkpoint is named as such), each naming the file.
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{str(p)!r} is a folder; a classifier is one file written by `scoresde train-classifier`")
    if not p.is_file():
        raise ValueError(f"classifier file {str(p)!r} not found (write one with `scoresde train-classifier`)")
    with p.open("rb") as f:
        verified = f.read(len(MAGIC)) == MAGIC
    if verified:
        blob = load_checkpoint(p)  # CheckpointError (a ValueError) on truncation or corruption
    else:  # a plain torch.save file, as written before classifiers were verified checkpoints
        try:
            blob = torch.load(p, map_location="cpu", weights_only=True)
        except Exception:
            raise ValueError(f"{str(p)!r} is not a valid classifier file (damaged, or not written by "
                             "`scoresde train-classifier`)") from None
    if not isinstance(blob, dict) or blob.get("kind") != "noisy_classifier":
        what = ("a score-model checkpoint: pass it as --checkpoint" if isinstance(blob, dict) and "model" in blob
                else "not written by `scoresde train-classifier`")
        raise ValueError(f"{str(p)!r} is not a classifier file ({what})")
    try:
        cfg = dict(blob["config"])
        clf = NoisyClassifier(cfg.pop("data_shape"), cfg.pop("n_classes"), **cfg)
        clf.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{str(p)!r} is a damaged classifier file: {err}") from None
    clf.trained_for = blob.get("trained_for")
    recorded = (clf.trained_for or {}).get("sde")
    if isinstance(recorded, dict) and recorded.get("name"):
        try:  # the SDE it was trained for, as ClassifierGuidance compares it with the score's
            clf.sde = SDEConfig(recorded["name"], dict(recorded.get("params") or {})).build()
        except Exception:  # noqa: BLE001 - a custom SDE the config cannot rebuild: nothing to compare
            pass
    return clf.eval(), clf.n_classes


def check_classifier_fits(clf: NoisyClassifier, sde: object, data: str | None = None) -> None:
    """Warn when ``clf`` was trained for another SDE (class or parameters) or other data.

    The classifier models ``p_t(c | x_t)`` of one forward process on one dataset; guidance with
    it under another SDE or on other data steers by the wrong class posterior.
    """
    recorded = getattr(clf, "trained_for", None)
    if not recorded:
        return
    problems = []
    if recorded.get("sde") is not None:
        try:
            SDEConfig(**recorded["sde"]).with_instance(sde)
        except (ValueError, TypeError):
            here = SDEConfig.from_sde(sde)
            problems.append(f"SDE {recorded['sde']['name']} {recorded['sde']['params']} "
                            f"(here: {here.name} {here.params})")
    if data is not None and recorded.get("data") is not None and recorded["data"] != data:
        problems.append(f"data {recorded['data']!r} (here: {data!r})")
    if problems:
        warnings.warn("the classifier was trained for " + " and ".join(problems) + "; its guidance is "
                      "that of another noising process or dataset: retrain it with `scoresde train-classifier`",
                      stacklevel=2)
