"""Stub of torchvision.ops: only `misc.FrozenBatchNorm2d` exists."""

from torchvision._unavailable import make_getattr
from torchvision.ops import misc  # noqa: F401

__getattr__ = make_getattr(__name__)
