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


def test_onnx_latency_is_the_median_ms_of_the_timed_session_calls(tiny, tmp_path):
    """The report's latency against a stopwatch inside the real ONNX Runtime session's `run`.

    Each timed call of the loop encloses one inner call, so the reported median (in ms) cannot be
    below the median of the inner times of the timed calls (the ones after the warm-up); a figure in
    seconds, or timing anything but the session, falls below it. No speed is asserted.
    """
    import time

    import onnxruntime as ort

    from deploy.common import input_spec
    from deploy.onnx_export import latency_ms

    out = str(tmp_path / "t.onnx")
    deploy.to_onnx(tiny, out, verify=False)
    session, inner_ms = ort.InferenceSession(out, providers=["CPUExecutionProvider"]), []

    class Stopwatch:  # the real session, its run() timed from inside
        def get_inputs(self):
            return session.get_inputs()

        def run(self, *args):
            start = time.perf_counter_ns()
            result = session.run(*args)
            inner_ms.append((time.perf_counter_ns() - start) / 1e6)
            return result

    reported = latency_ms(Stopwatch(), input_spec(tiny), warmup=3, runs=20)
    assert len(inner_ms) == 23
    assert reported >= np.median(inner_ms[3:])


def test_onnx_rejects_old_opset(tiny, tmp_path):
    with pytest.raises(deploy.DeployError, match="opset"):
        deploy.to_onnx(tiny, str(tmp_path / "t.onnx"), opset=13)
    assert os.listdir(tmp_path) == []
