"""Stub of torchvision.datasets: every name is a placeholder that fails when used."""

from torchvision._unavailable import make_getattr

__getattr__ = make_getattr(__name__)
