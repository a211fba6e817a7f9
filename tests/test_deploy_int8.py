"""deploy.int8_graph: the int8-friendly export graph is the same function in float, and full int8 runs in one XNNPACK partition."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import deploy
import ef_keras
from deploy import calibration, common, convert, int8_graph, report, testing, tflite, verify
from ef_keras.models.efficientformer.config import EfficientFormerConfig
from tests.helpers import TINY, TINY_INPUT

#: A searched-like architecture: empty early stages and no attention (what the digits proxy search returned),
#: and one with attention on a non-square grid.
SEARCHED = EfficientFormerConfig(widths=(16, 32, 48, 64), depths=(0, 0, 5, 3), num_vit=0, name="searched")
SEARCHED_ATTN = EfficientFormerConfig(widths=(16, 16, 32, 48), depths=(2, 1, 0, 3), num_vit=2, name="searched_vit")


def _max_rel_diff(model, graph, inputs):
    reference = common.keras_predict(model, inputs)
    return float(np.abs(reference - common.keras_predict(graph, inputs)).max() / max(1.0, np.sqrt(np.mean(reference ** 2))))


def _avg_pool_minus_x(x, k):
    """Reference pool mixer, by loops: mean over the in-bounds k x k window minus the centre."""
    out = np.empty_like(x)
    r = k // 2
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            window = x[:, max(0, i - r):i + r + 1, max(0, j - r):j + r + 1, :]
            out[:, i, j, :] = window.mean(axis=(1, 2)) - x[:, i, j, :]
    return out


@pytest.mark.parametrize("shape,k", [((2, 5, 7, 4), 3), ((1, 1, 1, 3), 3), ((1, 2, 3, 2), 3), ((1, 6, 6, 2), 5)])
def test_pool_mixer_is_average_pool_excluding_padding(shape, k):
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    got = np.asarray(int8_graph.PoolMixer(k)(x))
    np.testing.assert_allclose(got, _avg_pool_minus_x(x, k), atol=1e-5)
    keras_pool = np.asarray(keras.layers.AveragePooling2D(k, strides=1, padding="same")(x)) - x
    np.testing.assert_allclose(got, keras_pool, atol=1e-5)


@pytest.mark.parametrize("config,input_shape", [(TINY, TINY_INPUT), ("l1", (224, 224, 3)), (SEARCHED, (64, 96, 3)),
                                                (SEARCHED_ATTN, (96, 64, 3))])
def test_export_graph_equals_model(config, input_shape):
    model = testing.randomize_weights(ef_keras.EfficientFormer(config, input_shape=input_shape, classes=10), seed=3)
    graph = int8_graph.export_model(model)
    assert not [layer for layer in graph.layers if isinstance(layer, ef_keras.layers.Meta4D)]  # every pool mixer rewritten
    inputs = verify.sample_inputs(common.input_spec(model), count=2)
    assert _max_rel_diff(model, graph, inputs) <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["l3", "l7"])
def test_export_graph_equals_named_variant(variant):
    model = testing.randomize_weights(ef_keras.EfficientFormer(variant), seed=3)
    inputs = verify.sample_inputs(common.input_spec(model), count=2)
    assert _max_rel_diff(model, int8_graph.export_model(model), inputs) <= 1e-5


def test_backbone_and_other_models():
    backbone = testing.randomize_weights(ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, include_top=False))
    inputs = verify.sample_inputs(common.input_spec(backbone), count=2)
    assert _max_rel_diff(backbone, int8_graph.export_model(backbone), inputs) <= 1e-5
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    assert int8_graph.export_model(plain) is plain


def test_gelu_forms():
    x = np.linspace(-6, 6, 2001).astype("float32")
    exact = np.asarray(keras.activations.gelu(x, approximate=False))
    np.testing.assert_allclose(np.asarray(int8_graph.gelu(x)), exact, atol=1e-6)
    np.testing.assert_allclose(np.asarray(int8_graph.gelu(x, "tanh")),
                               np.asarray(keras.activations.gelu(x, approximate=True)), atol=1e-5)
    sigmoid_error = np.abs(np.asarray(int8_graph.gelu(x, "sigmoid")) - exact).max()
    assert 1e-3 < sigmoid_error < 0.03  # x * sigmoid(1.702 x) is a coarse approximation
    with pytest.raises(ValueError, match="GELU form"):
        int8_graph.gelu(x, "relu")


@pytest.fixture(scope="module")
def tiny():
    return testing.randomize_weights(ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=10), seed=1)


@pytest.fixture(scope="module")
def calibration_inputs(tiny):
    return verify.sample_inputs(common.input_spec(tiny), count=8, seed=1)


def test_full_int8_is_one_xnnpack_partition(tiny, calibration_inputs, tmp_path):
    spec = common.input_spec(tiny)
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(tflite.convert(tiny, spec, "int8", calibration_inputs, float_ops=()))
    left = tflite.reference_ops(str(plain))  # the converter's plain full-integer model, for contrast
    assert {"AVERAGE_POOL_2D (int8)", "GELU (int8)", "SOFTMAX (int8)"} <= set(left)
    plain_xnnpack = tflite.xnnpack_summary(str(plain))
    assert plain_xnnpack["partitions"] > 1
    warning = report.delegation_warning({"precision": "int8", "xnnpack": plain_xnnpack, "xnnpack_reference_ops": left})
    assert "not fully delegated" in warning and "GELU (int8)" in warning and "\n" not in warning

    result = deploy.to_tflite(tiny, str(tmp_path / "int8.tflite"), precision="int8",
                              calibration_data=calibration_inputs)
    assert result["xnnpack"]["partitions"] == 1 and result["xnnpack"]["fully_delegated"]
    assert result["xnnpack_reference_ops"] == {}
    census = result["op_census_by_dtype"]
    assert census["int8"]["CONV_2D"] == result["op_census"]["CONV_2D"]  # every convolution is int8
    assert census["int8"]["DEPTHWISE_CONV_2D"] == sum(TINY.depths) - TINY.num_vit  # one per pool mixer
    assert "AVERAGE_POOL_2D" not in result["op_census"] and census["float32"]["GELU"] == sum(TINY.depths)
    assert result["int8_graph"]["gelu"] == "exact" and result["int8_graph"]["float_max_rel_diff"] <= 1e-5
    assert result["verification"]["cosine"] >= 0.99
    assert report.delegation_warning(result) is None
    assert "int8 / float ops" in report.format_table(result)


def test_approximate_gelu_is_int8_and_reports_its_float_delta(tiny, calibration_inputs, tmp_path):
    result = deploy.to_tflite(tiny, str(tmp_path / "sig.tflite"), precision="int8",
                              calibration_data=calibration_inputs, int8_gelu="sigmoid")
    assert "GELU" not in result["op_census"] and result["op_census_by_dtype"]["int8"]["LOGISTIC"] == sum(TINY.depths)
    assert result["xnnpack"]["fully_delegated"]
    assert 1e-5 < result["int8_graph"]["float_max_abs_diff"] < 1.0


def test_bad_gelu_options(tiny, tmp_path):
    with pytest.raises(deploy.DeployError, match="int8 GELU form"):
        deploy.to_tflite(tiny, str(tmp_path / "x.tflite"), precision="int8", int8_gelu="relu")
    with pytest.raises(deploy.DeployError, match="full-integer int8 only"):
        deploy.to_tflite(tiny, str(tmp_path / "x.tflite"), precision="fp16", int8_gelu="tanh")
    assert not list(tmp_path.iterdir())


def test_bad_calibration_data_leaves_no_file(tiny, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    spec = common.input_spec(tiny)
    cases = [
        (verify.sample_inputs(spec, count=2), "at least 4"),
        (np.ones((8, 64, 64, 1), "float32"), "does not match"),
        (np.ones((8, 32, 32, 3), "float32"), "does not match"),
        (str(tmp_path / "empty"), "no images"),
    ]
    (tmp_path / "empty").mkdir()
    for data, message in cases:
        with pytest.raises(deploy.DeployError, match=message):
            deploy.to_tflite(tiny, str(out / "m.tflite"), precision="int8", calibration_data=data)
        assert not list(out.iterdir())


def test_cli_int8_flags_without_int8_meaning(tmp_path):
    arch = tmp_path / "tiny.json"
    arch.write_text(json.dumps(TINY.to_dict()))
    with pytest.raises(deploy.DeployError, match="not available for onnx"):
        convert.convert("onnx", str(arch), precision="int8", out=str(tmp_path / "m.onnx"))
    with pytest.raises(deploy.DeployError, match="--int8-gelu tanh applies to --to tflite --precision int8 only"):
        convert.convert("tflite", str(arch), precision="fp32", int8_gelu="tanh", out=str(tmp_path / "m.tflite"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.dirname(__file__)), "deploy",
                                                        "convert.py"), "--to", "coreml", "--model", str(arch),
                           "--precision", "int8", "--int8-gelu", "sigmoid"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and "--int8-gelu" in errors[0], proc.stderr[-2000:]
    assert sorted(os.listdir(tmp_path)) == ["tiny.json"]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["l1", "l3", "l7"])
def test_named_variants_full_int8_one_partition(variant, tmp_path):
    model = testing.randomize_weights(ef_keras.EfficientFormer(variant))
    samples = verify.sample_inputs(common.input_spec(model), count=8, seed=1)
    result = deploy.to_tflite(model, str(tmp_path / f"{variant}.tflite"), precision="int8", calibration_data=samples)
    assert result["xnnpack"]["fully_delegated"] and result["xnnpack_reference_ops"] == {}
    assert result["int8_graph"]["float_max_rel_diff"] <= 1e-5
    assert result["verification"]["cosine"] >= 0.99


def test_calibration_from_an_in_memory_dataset():
    """`--calibration-data digits` (or embedded): grey train images, resized and ImageNet-normalised."""
    from ef_keras.preprocessing import IMAGENET_MEAN, IMAGENET_STD

    samples = calibration.calibration_samples("digits", common.InputSpec("image", (1, 32, 32, 3)))
    assert samples.shape == (calibration.DEFAULT_SAMPLES, 32, 32, 3)
    pixels = samples * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)  # back to the [0, 1] grey levels
    np.testing.assert_allclose(pixels[..., 0], pixels[..., 2], atol=1e-5)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5 and pixels.std() > 0.1
