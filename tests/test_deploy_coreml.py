"""deploy.to_coreml and the NumPy MIL evaluator that checks Core ML numerics on Linux."""

import json
import os

import coremltools as ct
import keras
import numpy as np
import pytest

import deploy
import ef_keras
from deploy import common, coreml, mil_eval, testing, verify
from tests.helpers import TINY, TINY_INPUT


@pytest.fixture(scope="module")
def tiny():
    return testing.randomize_weights(ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=10), seed=2)


def _keras_vs_mil(model, tmp_path, precision="fp32"):
    spec = common.input_spec(model)
    path = str(tmp_path / "m.mlpackage")
    coreml.convert(model, spec, precision).save(path)
    program = mil_eval.MilProgram(path)
    x = verify.sample_inputs(spec, count=2)
    got = np.concatenate([program.run({spec.name: x[i:i + 1]})[program.output_names[0]] for i in range(2)])
    return common.keras_predict(model, x), got, program


def test_fp32_program_matches_keras_tightly(tiny, tmp_path):
    result = deploy.to_coreml(tiny, str(tmp_path / "t.mlpackage"), precision="fp32")
    v = result["verification"]
    assert v["verified"] and v["max_rel_diff"] <= 1e-4 and v["top1_agreement"] == 1.0
    assert result["coreml"]["compute_precision"] == "fp32"
    assert {"conv", "avg_pool", "gelu", "softmax", "matmul"} <= set(result["op_census"])
    assert result["reshape_transpose_gather"]["gather"] == 0
    assert os.path.isdir(tmp_path / "t.mlpackage")
    assert json.load(open(tmp_path / "t.mlpackage.report.json"))["target"] == "coreml"


def test_fp16_int8_image_input_labels(tiny, tmp_path):
    fp16 = deploy.to_coreml(tiny, str(tmp_path / "fp16.mlpackage"))
    assert fp16["precision"] == "fp16" and fp16["verification"]["top1_agreement"] == 1.0
    assert "cast" in fp16["op_census"]  # fp32 I/O around an fp16 program
    spec = ct.utils.load_spec(str(tmp_path / "fp16.mlpackage"))
    assert [o.name for o in spec.description.output] == ["logits"]
    assert spec.description.input[0].type.multiArrayType.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert spec.specificationVersion >= 7  # iOS 16

    int8 = deploy.to_coreml(tiny, str(tmp_path / "int8.mlpackage"), precision="int8")
    assert int8["op_census"].get("constexpr_affine_dequantize", 0) > 0
    assert int8["size_bytes"] < fp16["size_bytes"] and int8["verification"]["cosine"] >= 0.99

    labels = [f"class_{i}" for i in range(10)]
    image = deploy.to_coreml(tiny, str(tmp_path / "img.mlpackage"), image_input=True, class_labels=labels)
    assert image["verification"]["top1_agreement"] == 1.0
    spec = ct.utils.load_spec(str(tmp_path / "img.mlpackage"))
    assert spec.description.input[0].type.WhichOneof("Type") == "imageType"
    assert spec.description.predictedProbabilitiesName == "logits"
    assert "logits" in [o.name for o in spec.description.output]


def test_bad_arguments(tiny, tmp_path):
    with pytest.raises(deploy.DeployError, match="labels"):
        deploy.to_coreml(tiny, str(tmp_path / "a.mlpackage"), class_labels=["a", "b"])
    with pytest.raises(deploy.DeployError, match=".mlpackage"):
        deploy.to_coreml(tiny, str(tmp_path / "a.mlmodel"))
    with pytest.raises(deploy.DeployError, match="precision"):
        deploy.to_coreml(tiny, str(tmp_path / "a.mlpackage"), precision="int4")
    assert os.listdir(tmp_path) == []


def test_evaluator_detects_a_different_model(tiny, tmp_path):
    """Independence check: the evaluator's output follows the program, not the Keras model."""
    other = testing.randomize_weights(ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=10), seed=3)
    path = str(tmp_path / "other.mlpackage")
    coreml.convert(other, common.input_spec(other), "fp32").save(path)
    program = mil_eval.MilProgram(path)
    spec = common.input_spec(tiny)
    x = verify.sample_inputs(spec, count=2)
    got = np.concatenate([program.run({spec.name: x[i:i + 1]})["logits"] for i in range(2)])
    with pytest.raises(deploy.DeployError):
        verify.compare(common.keras_predict(tiny, x), got, "fp32", "CoreML")


def test_evaluator_op_semantics(tmp_path):
    """Strided/padded conv, padding-excluding average pool, dense on 3D, LayerNorm, softmax, erf GELU."""
    inputs = keras.Input((9, 10, 4))
    x = keras.layers.ZeroPadding2D(1)(inputs)
    x = keras.layers.Conv2D(6, 3, strides=2)(x)
    x = keras.layers.AveragePooling2D(3, strides=1, padding="same")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", dilation_rate=1)(x)
    x = keras.layers.Reshape((-1, 6))(x)
    x = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    x = keras.layers.Dense(12)(x)
    x = keras.layers.Lambda(ef_keras.layers.gelu)(x)
    x = keras.layers.Softmax(axis=1)(x)
    model = testing.randomize_weights(keras.Model(inputs, x))
    reference, got, program = _keras_vs_mil(model, tmp_path)
    np.testing.assert_allclose(got, reference, atol=2e-5)
    assert program.op_census()["gelu"] == 1


def test_evaluator_rejects_unknown_ops(tmp_path):
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.ops.cumsum(inputs, axis=-1))
    path = str(tmp_path / "c.mlpackage")
    coreml.convert(model, common.input_spec(model), "fp32").save(path)
    program = mil_eval.MilProgram(path)
    with pytest.raises(mil_eval.MilEvalError, match="cumsum"):
        program.run({program.input_names[0]: np.ones((1, 8), np.float32)})


def test_fp16_emulation_rounds_like_fp16(tmp_path):
    """An fp16 program is evaluated in fp16: its outputs sit on the fp16 grid, unlike the fp32 program's."""
    inputs = keras.Input((16,))
    model = testing.randomize_weights(keras.Model(inputs, keras.layers.Dense(8)(inputs)))
    path = str(tmp_path / "h.mlpackage")
    coreml.convert(model, common.input_spec(model), "fp16").save(path)
    program = mil_eval.MilProgram(path)
    x = verify.sample_inputs(common.input_spec(model), count=1)
    inner = [op for op in program.block.operations if op.type == "linear"]
    assert inner and inner[0].outputs[0].type.tensorType.dataType == 10  # FLOAT16
    out = program.run({program.input_names[0]: x})[program.output_names[0]]
    assert np.array_equal(out.astype(np.float16).astype(np.float32), out)
    assert not np.array_equal(out, common.keras_predict(model, x))


@pytest.mark.slow
def test_l1_fp16(tmp_path):
    model = testing.randomize_weights(ef_keras.EfficientFormerL1())
    result = deploy.to_coreml(model, str(tmp_path / "l1.mlpackage"))
    assert result["verification"]["top1_agreement"] == 1.0 and result["verification"]["max_rel_diff"] <= 1e-2
