"""Stub of torchvision.transforms.functional: the real `InterpolationMode` enum, placeholders otherwise."""

from enum import Enum

from torchvision._unavailable import make_getattr

__getattr__ = make_getattr(__name__)


class InterpolationMode(Enum):
    """Interpolation modes, with the same members and values as torchvision's."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"
