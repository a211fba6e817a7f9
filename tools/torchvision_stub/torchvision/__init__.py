"""A minimal stand-in for torchvision, used only to let timm import on a CPU-only torch.

Why: timm imports torchvision at import time (`FrozenBatchNorm2d`, data transforms, datasets), but
torchvision wheels from PyPI either fail beside the local CPU-only torch 2.13.0 (`operator
torchvision::nms does not exist`) or pull a CUDA torch. Building timm's EfficientFormer with
`pretrained=False` needs none of torchvision's functionality.

What it provides: a real `ops.misc.FrozenBatchNorm2d`, a real `transforms.functional.InterpolationMode`
and placeholder classes for every other public name timm touches, which raise a clear ImportError
when used. `tools/timm_reference.import_timm()` puts this stub on `sys.path` only when a real
torchvision cannot be imported.
"""

from torchvision import datasets, ops, transforms  # noqa: F401

__version__ = "0.0.0+ef_keras_stub"
IS_EF_KERAS_STUB = True
