"""Import timm (the PyTorch reference for EfficientFormer) on a machine without a working torchvision.

timm imports torchvision at import time, but the torchvision wheels that fit the local CPU-only
torch 2.13.0 fail to import (`RuntimeError: operator torchvision::nms does not exist`) and a plain
`pip install torchvision` pulls a CUDA torch (~5.5 GB). Building timm's `efficientformer_l*` with
`pretrained=False` needs nothing from torchvision, so `import_timm()` falls back to the minimal stub
in `tools/torchvision_stub/` when (and only when) a real torchvision cannot be imported.

Used by `tests/fixtures/make_parity_fixtures.py` and by the latency benchmarks:

    from tools.timm_reference import import_timm, create_reference_model
    timm = import_timm()
    model = create_reference_model("l1")  # timm efficientformer_l1, eval mode, random init

Install (see tests/fixtures/README.md): `pip install torch==2.13.0 pyyaml huggingface_hub safetensors`
then `pip install --no-deps timm` (no torchvision from PyPI).
"""

import os
import sys

STUB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torchvision_stub")

# ef_keras variant name -> timm model name.
TIMM_MODEL_NAMES = {
    "l1": "efficientformer_l1",
    "l3": "efficientformer_l3",
    "l7": "efficientformer_l7",
}


def _drop_modules(prefix):
    """Forget a (possibly half-imported) package and its submodules so it can be imported again."""
    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[name]


def torchvision_is_stub():
    """True when the imported torchvision is the stub from tools/torchvision_stub."""
    module = sys.modules.get("torchvision")
    return bool(getattr(module, "IS_EF_KERAS_STUB", False))


def import_timm():
    """Import and return timm, using the torchvision stub only if a real torchvision does not import.

    Raises:
        ImportError: torch or timm is not installed (the message says what to install).
    """
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "the timm reference needs torch: pip install torch==2.13.0 "
            "(a CPU build is enough; see tests/fixtures/README.md)"
        ) from e
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken torchvision raises RuntimeError, not ImportError
        _drop_modules("torchvision")
        if STUB_DIR not in sys.path:
            sys.path.insert(0, STUB_DIR)
        import torchvision  # noqa: F401

        if not torchvision_is_stub():
            raise ImportError(f"expected the torchvision stub from {STUB_DIR}, got {torchvision.__file__}")
    try:
        import timm
    except ImportError as e:
        raise ImportError(
            "the timm reference needs timm: pip install --no-deps timm pyyaml huggingface_hub safetensors "
            "(see tests/fixtures/README.md)"
        ) from e
    return timm


def create_reference_model(variant, num_classes=1000):
    """Build timm's EfficientFormer `variant` ("l1", "l3", "l7") with random init, in eval mode.

    Raises:
        ValueError: unknown variant.
    """
    if variant not in TIMM_MODEL_NAMES:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(TIMM_MODEL_NAMES)}")
    timm = import_timm()
    model = timm.create_model(TIMM_MODEL_NAMES[variant], pretrained=False, num_classes=num_classes)
    return model.eval()
