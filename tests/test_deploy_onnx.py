"""deploy.to_onnx: tf2onnx at opset >= 17, verified in ONNX Runtime."""

import os

import numpy as np
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
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 64, 64, 3]


def test_onnx_and_tflite_count_the_same_flops(tiny, tmp_path):
    """Two independent counters (ONNX shape inference, the TFLite graph) on one model agree; the roofline adds up."""
    from deploy import roofline

    onnx_report = deploy.to_onnx(tiny, str(tmp_path / "t.onnx"))
    tflite_report = deploy.to_tflite(tiny, str(tmp_path / "t.tflite"))
    assert onnx_report["roofline"]["model_gflop"] == pytest.approx(tflite_report["roofline"]["model_gflop"], rel=1e-6)
    for r in (onnx_report["roofline"], tflite_report["roofline"]):
        assert r["probe"] == roofline.PROBE_DESCRIPTION and r["unit"] == "GFLOP/s"
        for stat in ("median", "p10"):
            assert r[f"share_{stat}"] == pytest.approx(r[f"achieved_{stat}"] / r[f"probe_{stat}"])
            assert r[f"achieved_{stat}"] == pytest.approx(r["model_gflop"] * 1e3 / r[f"model_{stat}_ms"])


def test_onnx_rejects_old_opset(tiny, tmp_path):
    with pytest.raises(deploy.DeployError, match="opset"):
        deploy.to_onnx(tiny, str(tmp_path / "t.onnx"), opset=13)
    assert os.listdir(tmp_path) == []
