"""Data: degradation synthesis, CDD-11/AllWeather/folder/synthetic datasets, mini datasets, image I/O.

Quick tour::

    from m2restore.data import build_dataset, make_mini_cdd11
    from m2restore.data.degrade import degrade             # the function; m2restore.data.degrade is the module
    root = make_mini_cdd11("data/mini-cdd11")              # seconds, offline (scikit-image photographs)
    ds = build_dataset("mini-cdd11", root, "train", patch_size=64, augment=True)
    item = ds[0]                                           # {"input", "target", "type", "name"}
"""

from . import degrade
from .datasets import (
    ALLWEATHER_SUBSETS,
    CDD11,
    AllWeather,
    DatasetError,
    Pair,
    PairedDataset,
    PairedFolder,
    Synthetic,
    build_dataset,
    list_datasets,
    type_balanced_sampler,
    type_balanced_weights,
)
from .degrade import ALLWEATHER_TYPES, CDD11_TYPES, DEGRADATION_TYPES, SynthesisConfig
from .io import ImageConversionWarning, ImageReadError, list_images, read_image, write_image
from .mini import make_mini_allweather, make_mini_cdd11

__all__ = [
    "ALLWEATHER_SUBSETS",
    "ALLWEATHER_TYPES",
    "CDD11",
    "CDD11_TYPES",
    "DEGRADATION_TYPES",
    "AllWeather",
    "DatasetError",
    "ImageConversionWarning",
    "ImageReadError",
    "Pair",
    "PairedDataset",
    "PairedFolder",
    "SynthesisConfig",
    "Synthetic",
    "build_dataset",
    "degrade",
    "list_datasets",
    "list_images",
    "make_mini_allweather",
    "make_mini_cdd11",
    "read_image",
    "type_balanced_sampler",
    "type_balanced_weights",
    "write_image",
]
