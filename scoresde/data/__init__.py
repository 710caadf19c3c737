"""Training data: 2-D toys by name, small image sets, and your own arrays or image folders.

    scoresde.data.toy("checkerboard").sample(n, generator=g)
    scoresde.data.load_data("my_points.npy")       # (N, D) array -> ArrayDataset
    scoresde.data.load_data("my_images/", image_size=32)
"""

from .arrays import ArrayDataset, DataError, as_tensor_data, load_array  # noqa: F401
from .folder import load_image_folder  # noqa: F401
from .identity import DataMismatchError, data_identity, describe_identity, same_data  # noqa: F401
from .images import IMAGE_DATASETS, ImageDataset, digits, image_grid  # noqa: F401
from .load import builtin_names, is_builtin, load_data  # noqa: F401
from .scale import suggest_sigma_max  # noqa: F401
from .toys import TOYS, MixtureToy, Toy, available_toys, toy  # noqa: F401
