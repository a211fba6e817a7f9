"""Stub of torchvision.transforms: `functional.InterpolationMode` is real, every other name a placeholder."""

from torchvision._unavailable import make_getattr
from torchvision.transforms import functional  # noqa: F401

__getattr__ = make_getattr(__name__)
