"""Small shared pieces for the tests: a tiny architecture that builds and runs in well under a second."""

from ef_keras.config import EfficientFormerConfig

TINY = EfficientFormerConfig(widths=(16, 32, 48, 64), depths=(1, 1, 1, 2), num_vit=1, name="tiny")
TINY_INPUT = (64, 64, 3)
