"""Tests for tools/timm_reference.py and the torchvision stub (skipped where torch/timm are not installed)."""

import importlib.util
import json
import os
import sys

import pytest

pytest.importorskip("torch")
if importlib.util.find_spec("timm") is None:
    pytest.skip("timm is not installed (see tests/fixtures/README.md)", allow_module_level=True)

from tools import timm_reference  # noqa: E402


def test_import_timm_and_build_l1():
    timm = timm_reference.import_timm()
    assert "torchvision" in sys.modules
    model = timm_reference.create_reference_model("l1")
    assert not model.training
    with open(os.path.join(os.path.dirname(__file__), "fixtures", "parity_fixtures.json")) as f:
        record = json.load(f)["variants"]["l1"]  # what the fixture generator recorded from timm
    assert sum(p.numel() for p in model.parameters()) == record["params_all"]
    assert len(model.state_dict()) == record["num_keys"]
    assert timm.__version__


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown variant"):
        timm_reference.create_reference_model("l2")


def test_stub_placeholders_fail_clearly():
    timm_reference.import_timm()
    if not timm_reference.torchvision_is_stub():
        pytest.skip("a real torchvision is installed; the stub is not in use")
    import torch
    import torchvision.transforms as transforms
    from torchvision.ops.misc import FrozenBatchNorm2d

    with pytest.raises(ImportError, match="torchvision stub"):
        transforms.ToTensor()
    bn = FrozenBatchNorm2d(3)
    bn.running_var.fill_(4.0)
    assert torch.allclose(bn(torch.ones(1, 3, 2, 2)), torch.full((1, 3, 2, 2), 0.5), atol=1e-5)
