"""Training data: 2-D toy distributions by name, and small image sets.

    scoresde.data.toy("checkerboard").sample(n, generator=g)
"""

from .images import IMAGE_DATASETS, ImageDataset, digits, image_grid  # noqa: F401
from .toys import TOYS, MixtureToy, Toy, available_toys, toy  # noqa: F401
