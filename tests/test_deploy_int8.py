"""deploy.int8_graph: full int8 runs in one XNNPACK partition for any weights and calibration data."""

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

@pytest.fixture(scope="module")
def tiny():
    return testing.randomize_weights(ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=10), seed=1)


@pytest.fixture(scope="module")
def calibration_inputs(tiny):
    return verify.sample_inputs(common.input_spec(tiny), count=16, seed=1)


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
    assert census["int8"]["DEPTHWISE_CONV_2D"] == sum(TINY.depths) - TINY.num_vit  # one per pool mixer
    assert census["int8"]["CONV_2D"] == result["op_census"]["CONV_2D"]  # every convolution is int8
    assert "AVERAGE_POOL_2D" not in result["op_census"] and census["float32"]["GELU"] == sum(TINY.depths)
    assert result["export_graph"]["gelu"] == "exact" and result["export_graph"]["float_max_rel_diff"] <= 1e-5
    assert result["verification"]["cosine"] >= 0.99
    assert report.delegation_warning(result) is None
    assert "int8 / float ops" in report.format_table(result)


def test_approximate_gelu_is_int8_and_reports_its_float_delta(tiny, calibration_inputs, tmp_path):
    result = deploy.to_tflite(tiny, str(tmp_path / "sig.tflite"), precision="int8",
                              calibration_data=calibration_inputs, int8_gelu="sigmoid")
    assert "GELU" not in result["op_census"] and result["op_census_by_dtype"]["int8"]["LOGISTIC"] == sum(TINY.depths)
    assert result["xnnpack"]["fully_delegated"]
    assert 1e-5 < result["export_graph"]["float_max_abs_diff"] < 1.0


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
        (verify.sample_inputs(spec, count=8), "percentile ranges needs at least 16 .*minmax needs 4"),
        (np.ones((8, 64, 64, 1), "float32"), "does not match"),
        (np.ones((8, 32, 32, 3), "float32"), "does not match"),
        (str(tmp_path / "empty"), "no images"),
    ]
    (tmp_path / "empty").mkdir()
    for data, message in cases:
        with pytest.raises(deploy.DeployError, match=message):
            deploy.to_tflite(tiny, str(out / "m.tflite"), precision="int8", calibration_data=data)
        assert not list(out.iterdir())
    with pytest.raises(deploy.DeployError, match="minmax ranges needs at least 4 .*percentile needs 16"):
        deploy.to_tflite(tiny, str(out / "m.tflite"), precision="int8", int8_ranges="minmax",
                         calibration_data=verify.sample_inputs(spec, count=2))
    with pytest.raises(deploy.DeployError, match="int8 range method"):
        deploy.to_tflite(tiny, str(out / "m.tflite"), precision="fp32", int8_ranges="minmax")
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


SEARCHED = EfficientFormerConfig(widths=(64, 128, 256, 512), depths=(2, 2, 5, 3), num_vit=2, name="searched")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["l1", "l3", "l7", "s0", "s1", "s2", "l", SEARCHED])
@pytest.mark.parametrize("weights", ["initialisation", "trained-like"])
def test_every_variant_one_partition_for_any_weights(variant, weights, tmp_path):
    model = ef_keras.registry.build_model(variant)
    if weights == "trained-like":
        testing.randomize_weights(model)
    result = deploy.to_tflite(model, str(tmp_path / "m.tflite"), precision="int8",
                              calibration_data="digits" if weights == "initialisation" else "embedded")
    assert result["xnnpack"]["fully_delegated"] and result["xnnpack_reference_ops"] == {}, result["xnnpack_reference_ops"]


@pytest.mark.slow
@pytest.mark.parametrize("source", ["embedded", "digits", "fashion_mnist", "folder", "tfds", "arrays"])
def test_l1_one_partition_for_every_calibration_source(source, tmp_path):
    """Every kind of source `--calibration-data` accepts, at initialisation (the hardest case for the ranges)."""
    import tensorflow_datasets as tfds
    from PIL import Image

    if source == "fashion_mnist":  # the full dataset is a Debian package, not always installed
        from ef_keras.data import DatasetError, load_arrays

        try:
            load_arrays("fashion_mnist", "train")
        except DatasetError as e:
            pytest.skip(str(e).splitlines()[0])
    model = ef_keras.EfficientFormer("l1")
    data = source
    if source == "folder":
        data = tmp_path / "images"
        data.mkdir()
        for i, pixels in enumerate(verify.photo_pixels(256, 256, count=16)):
            Image.fromarray(pixels.astype("uint8")).save(data / f"{i}.png")
        data = str(data)
    elif source == "arrays":
        data = verify.sample_inputs(common.input_spec(model), count=16, seed=2)
    with tfds.testing.mock_data(num_examples=16) if source == "tfds" else _no_context():
        result = deploy.to_tflite(model, str(tmp_path / "m.tflite"), precision="int8",
                                  calibration_data="tf_flowers" if source == "tfds" else data)
    assert result["xnnpack"]["fully_delegated"] and result["xnnpack_reference_ops"] == {}, result["xnnpack_reference_ops"]


def _no_context():
    import contextlib

    return contextlib.nullcontext()


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["l1", "l3", "l7"])
def test_named_variants_full_int8_one_partition(variant, tmp_path):
    model = testing.randomize_weights(ef_keras.EfficientFormer(variant))
    samples = verify.sample_inputs(common.input_spec(model), count=16, seed=1)
    result = deploy.to_tflite(model, str(tmp_path / f"{variant}.tflite"), precision="int8", calibration_data=samples)
    assert result["xnnpack"]["fully_delegated"] and result["xnnpack_reference_ops"] == {}
    assert result["export_graph"]["float_max_rel_diff"] <= 1e-5
    assert result["verification"]["cosine"] >= 0.99


def test_initialisation_weights_stay_in_one_partition(tmp_path):
    """Layer scales at 1e-5 and digit scans for calibration: 15 XNNPACK partitions for L1 before the fold and floor."""
    model = ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=10)  # as initialised: nothing randomised
    result = deploy.to_tflite(model, str(tmp_path / "init.tflite"), precision="int8", calibration_data="digits")
    assert result["xnnpack"]["fully_delegated"] and result["xnnpack_reference_ops"] == {}, result["xnnpack_reference_ops"]
    assert result["export_graph"]["folded"] == result["export_graph"]["scales"] == 2 * sum(TINY.depths)
    assert result["export_graph"]["ops_removed"] == {"SUB": sum(TINY.depths) - TINY.num_vit}  # one per pool mixer
    assert result["verification"]["cosine"] >= 0.99


def test_range_floor_lifts_tiny_branches_and_their_multipliers():
    """A residual ADD whose branch is 1e-5 of the stream, the branch ending in a MUL by a constant: both floored."""
    import tensorflow as tf

    inputs = keras.Input((8, 8, 4))
    branch = keras.layers.Conv2D(4, 1, kernel_initializer=keras.initializers.Constant(1e-6))(inputs)
    correction = np.linspace(0.5, 2.0, 64).astype("float32").reshape(1, 8, 8, 1)  # per cell: no conv can absorb it
    outputs = inputs + branch * correction
    model = keras.Model(inputs, outputs)
    spec = common.input_spec(model)
    samples = verify.sample_inputs(spec, count=16)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in samples)
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    floored = int8_graph.floor_residual_ranges(calibrated)

    def bounds(flatbuffer):
        from ai_edge_litert.tools import flatbuffer_utils

        subgraph = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer)).subgraphs[0]
        ops = {int(op.outputs[0]): op for op in subgraph.operators}
        stats = {i: max(abs(float(t.quantization.min[0])), abs(float(t.quantization.max[0])))
                 for i, t in enumerate(subgraph.tensors) if t.quantization is not None and t.quantization.min is not None}
        return subgraph, stats

    subgraph, before = bounds(calibrated)
    _, after = bounds(floored)
    add = max(subgraph.operators, key=lambda op: before.get(int(op.outputs[0]), 0))  # the residual ADD: widest output
    out = before[int(add.outputs[0])]
    lifted = [i for i in before if after[i] > before[i]]
    assert all(before[i] < int8_graph.RANGE_FLOOR * out for i in lifted)  # only tiny ranges move
    assert len(lifted) == 2  # the MUL's output (an ADD input) and, through the MUL, the conv's output
    mul_out, conv_out = sorted(lifted, key=lambda i: -after[i])[0], sorted(lifted, key=lambda i: after[i])[0]
    assert after[mul_out] >= int8_graph.RANGE_FLOOR * out * 0.999
    assert after[conv_out] >= after[mul_out] / correction.max() * 0.999


def test_percentile_ranges_are_the_order_statistics_over_all_samples():
    """Ranges leave out exactly k = tail x values per side, counted over every sample (not per sample)."""
    import tensorflow as tf
    from ai_edge_litert.tools import flatbuffer_utils

    inputs = keras.Input((10, 10, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, kernel_initializer="ones", bias_initializer="zeros")(inputs)
                        * 2.0)
    samples = np.random.default_rng(0).standard_normal((16, 10, 10, 1)).astype("float32") ** 3  # heavy tails
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in samples)
    converter._experimental_calibrate_only = True
    ranged = int8_graph.percentile_ranges(converter.convert(), samples, tail=0.01)  # k = 0.01 x 1600 = 16
    tensors = flatbuffer_utils.convert_bytearray_to_object(bytearray(ranged)).subgraphs[0].tensors
    ordered = np.sort(samples.ravel())
    expected = {1.0: (ordered[15], ordered[-16]), 2.0: (2 * ordered[15], 2 * ordered[-16])}
    found = {}
    for t in tensors:
        q = t.quantization
        if q is not None and q.min is not None and len(q.min) == 1:
            found[round(float(q.max[0]) / ordered[-16], 3)] = (float(q.min[0]), float(q.max[0]))
    assert set(found) == {1.0, 2.0}, found  # the input and the doubled output
    for factor, (low, high) in expected.items():
        np.testing.assert_allclose(found[factor], (low, high), rtol=1e-6)


def test_calibration_from_an_in_memory_dataset():
    """`--calibration-data digits` (or embedded): grey train images, resized and ImageNet-normalised."""
    from ef_keras.preprocessing import IMAGENET_MEAN, IMAGENET_STD

    samples = calibration.calibration_samples("digits", common.InputSpec("image", (1, 32, 32, 3)))
    assert samples.shape == (calibration.DEFAULT_SAMPLES, 32, 32, 3)
    pixels = samples * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)  # back to the [0, 1] grey levels
    np.testing.assert_allclose(pixels[..., 0], pixels[..., 2], atol=1e-5)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5 and pixels.std() > 0.1
