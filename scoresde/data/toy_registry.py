"""The name table of 2-D toys: ``toy(name, **options)`` and ``available_toys()``."""

from __future__ import annotations

from collections.abc import Callable

from solvers.registry import lookup

from .mixture_toys import EightGaussians, Grid25, Ring
from .toys import Checkerboard, Circles, Moons, Pinwheel, SwissRoll, Toy, TwoSpirals

__all__ = ["TOYS", "available_toys", "toy"]

#: Name -> toy class; ``TOYS[name](**options)`` builds one. The only toy registry.
TOYS: dict[str, Callable[..., Toy]] = {
    "moons": Moons,
    "swiss_roll": SwissRoll,
    "circles": Circles,
    "checkerboard": Checkerboard,
    "pinwheel": Pinwheel,
    "two_spirals": TwoSpirals,
    "eight_gaussians": EightGaussians,
    "grid_25": Grid25,
    "ring": Ring,
}


def available_toys() -> list[str]:
    """Names accepted by :func:`toy`."""
    return list(TOYS)


def toy(name: str, **options: float | int | bool) -> Toy:
    """The toy called ``name``, built with ``options`` (e.g. ``toy("moons", noise=0.05)``).

    Raises ``ValueError`` listing the valid names when ``name`` is unknown.
    """
    return lookup(TOYS, name, "toy")(**options)
