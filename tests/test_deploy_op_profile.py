"""deploy.op_profile: the one-op models are the model's ops, exactly; the profile adds up."""

import numpy as np
import pytest

import ef_keras
from deploy import common, op_profile, testing, tflite, verify
from deploy.common import litert_interpreter
from tests.helpers import TINY, TINY_INPUT


@pytest.fixture(scope="module")
def tiny_tflite():
    model = testing.randomize_weights(ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=10), seed=1)
    spec = common.input_spec(model)
    return tflite.convert(model, spec, "fp32"), verify.sample_inputs(spec, count=1)


def test_one_op_models_chained_reproduce_the_model(tiny_tflite):
    """Run every one-op model in order, feeding each the tensors computed so far: the model's output, bit for bit."""
    flatbuffer, x = tiny_tflite
    Interpreter = litert_interpreter()
    whole = Interpreter(model_content=flatbuffer)
    whole.allocate_tensors()
    whole.set_tensor(whole.get_input_details()[0]["index"], x)
    whole.invoke()
    expected = whole.get_tensor(whole.get_output_details()[0]["index"])

    values = {whole.get_input_details()[0]["name"]: x}
    ops = op_profile.single_op_models(flatbuffer)
    assert len(ops) == sum(tflite.op_census(flatbuffer).values())
    for kind, name, one in ops:
        interpreter = Interpreter(model_content=one)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], values[detail["name"]])
        interpreter.invoke()
        for detail in interpreter.get_output_details():
            values[detail["name"]] = interpreter.get_tensor(detail["index"])
    np.testing.assert_array_equal(values[whole.get_output_details()[0]["name"]], expected)


def test_profile_accounts_for_every_op(tiny_tflite):
    flatbuffer, _ = tiny_tflite
    result = op_profile.profile(flatbuffer, runs=3, warmup=1)
    census = tflite.op_census(flatbuffer)
    assert {row["op"]: row["count"] for row in result["by_type"]} == census
    assert result["sum_of_ops_ms"] == pytest.approx(sum(row["ms"] for row in result["by_type"]))
    assert sum(row["share"] for row in result["by_type"]) == pytest.approx(1.0)
    assert [row["ms"] for row in result["by_type"]] == sorted((row["ms"] for row in result["by_type"]), reverse=True)
    assert result["coverage"] == pytest.approx(result["sum_of_ops_ms"] / result["model_ms"])
