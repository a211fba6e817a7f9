"""deploy.to_onnx: tf2onnx at opset >= 17, verified in ONNX Runtime."""

import os

import onnx
import pytest

import deploy
import ef_keras
from deploy import testing
from tests.helpers import TINY, TINY_INPUT


@pytest.fixture(scope="module")
def tiny():
    return testing.randomize_weights(ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=10), seed=4)


def test_onnx_verified(tiny, tmp_path):
    out = str(tmp_path / "t.onnx")
    result = deploy.to_onnx(tiny, out)
    v = result["verification"]
    assert v["verified"] and v["max_rel_diff"] <= 1e-4 and v["top1_agreement"] == 1.0
    proto = onnx.load(out)
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert result["op_census"].get("Erf", 0) == 5 and "Erfc" not in result["op_census"]
    assert result["reshape_transpose_gather"]["gather"] == 0
    assert result["latency_ms"] > 0
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 64, 64, 3]


def test_onnx_rejects_old_opset(tiny, tmp_path):
    with pytest.raises(deploy.DeployError, match="opset"):
        deploy.to_onnx(tiny, str(tmp_path / "t.onnx"), opset=13)
    assert os.listdir(tmp_path) == []
