"""Training data: 2-D toys by name, small image sets, and your own arrays or image folders.

    scoresde.data.toy("checkerboard").sample(n, generator=g)
    scoresde.data.load_data("my_points.npy")       # (N, D) array -> ArrayDataset
    scoresde.data.load_data("my_images/", image_size=32)
"""

from .arrays import ArrayDataset, DataError, as_tensor_data, load_array
from .folder import load_image_folder
from .identity import DataMismatchError, data_identity, describe_identity, same_data
from .images import IMAGE_DATASETS, ImageDataset, digits, image_grid
from .load import builtin_names, is_builtin, load_data
from .scale import suggest_sigma_max
from .toys import TOYS, MixtureToy, Toy, available_toys, toy

__all__ = [
    "load_data", "builtin_names", "is_builtin",
    "toy", "available_toys", "TOYS", "Toy", "MixtureToy",
    "digits", "image_grid", "ImageDataset", "IMAGE_DATASETS", "load_image_folder",
    "ArrayDataset", "DataError", "as_tensor_data", "load_array",
    "suggest_sigma_max",
    "data_identity", "describe_identity", "same_data", "DataMismatchError",
]
