"""The model zoo. Importing this package registers every preset (see ``m2restore.registry``)."""
from . import adair, m2restore, promptir  # noqa: F401  (registration side effects)
from .base import RestorationOutput, count_parameters, pad_to_multiple

__all__ = ["RestorationOutput", "count_parameters", "pad_to_multiple"]
