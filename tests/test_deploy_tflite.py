"""deploy.to_tflite: builtin ops, BN/gather folding, the reshape/transpose budget, verification traps."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

import deploy
import ef_keras
from deploy import calibration, common, report, testing, tflite, verify
from tests.helpers import TINY, TINY_INPUT


@pytest.fixture(scope="module")
def tiny():
    return testing.randomize_weights(ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=10), seed=1)


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    """An ImageFolder tree (root/class/*.png) of real photo crops."""
    root = tmp_path_factory.mktemp("calib")
    for i, pixels in enumerate(verify.photo_pixels(80, 96, count=6)):
        os.makedirs(root / f"class{i % 2}", exist_ok=True)
        Image.fromarray(pixels.astype("uint8")).save(root / f"class{i % 2}" / f"{i}.png")
    return str(root)


def test_fp32_verified_builtin_and_within_budget(tiny, tmp_path):
    out = str(tmp_path / "tiny.tflite")
    result = deploy.to_tflite(tiny, out)
    assert os.path.isfile(out)
    assert json.load(open(out + ".report.json"))["op_census"] == result["op_census"]
    v = result["verification"]
    assert v["verified"] and v["max_rel_diff"] <= 1e-4 and v["top1_agreement"] == 1.0
    census = result["op_census"]
    assert not [op for op in census if op.startswith("Flex") or op == "CUSTOM"]
    assert result["reshape_transpose_gather"]["gather"] == 0  # attention-bias gather folded to a constant
    budget = result["dimension_consistency_budget"]
    assert budget["limit"] == 8 and budget["within"], budget
    assert result["xnnpack"] == {"partitions": 1, "fully_delegated": True, "graph_ops": result["op_count"]}
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporary left


def test_budget_scales_with_3d_blocks(tmp_path):
    config = ef_keras.EfficientFormerConfig(widths=(16, 16, 16, 32), depths=(1, 1, 1, 3), num_vit=3, name="v3")
    model = testing.randomize_weights(ef_keras.EfficientFormer(config, input_shape=(64, 64, 3), classes=5))
    result = deploy.to_tflite(model, str(tmp_path / "v3.tflite"))
    budget = result["dimension_consistency_budget"]
    assert budget["limit"] == 1 + 7 * 3 and budget["within"], budget
    assert result["reshape_transpose_gather"]["gather"] == 0


def test_batchnorm_folded_into_conv(tmp_path):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(4, 1)(x)
    x = keras.layers.BatchNormalization()(x)
    model = testing.randomize_weights(keras.Model(inputs, x))
    result = deploy.to_tflite(model, str(tmp_path / "bn.tflite"))
    assert result["op_census"] == {"CONV_2D": 2}
    # the roofline's FLOP count: 2 x (16x16 outputs x 8 channels x 3x3x3 taps + 16x16 x 4 x 8)
    assert result["roofline"]["model_gflop"] * 1e9 == pytest.approx(2 * (16 * 16 * 8 * 27 + 16 * 16 * 4 * 8))
    assert result["dimension_consistency_budget"] is None  # not an EfficientFormer


def test_fp16_and_int8(tiny, tmp_path, calib_dir):
    fp16 = deploy.to_tflite(tiny, str(tmp_path / "fp16.tflite"), precision="fp16")
    assert fp16["verification"]["max_rel_diff"] <= 1e-2 and fp16["verification"]["top1_agreement"] == 1.0
    int8 = deploy.to_tflite(tiny, str(tmp_path / "int8.tflite"), precision="int8", calibration_data=calib_dir,
                            int8_ranges="minmax")  # 6 images: enough for min/max ranges (4), not percentile (16)
    assert int8["calibration_samples"] == 6
    assert int8["verification"]["cosine"] >= 0.9 and int8["verification"]["top1_agreement"] is not None
    assert int8["size_bytes"] < fp16["size_bytes"] < os.path.getsize(tmp_path / "fp16.tflite") * 2
    dynamic = deploy.to_tflite(tiny, str(tmp_path / "dyn.tflite"), precision="int8-dynamic")
    assert dynamic["verification"]["cosine"] >= 0.9 and dynamic["xnnpack"]["fully_delegated"]


def test_int8_needs_calibration(tiny, tmp_path):
    with pytest.raises(deploy.DeployError, match="calibration"):
        deploy.to_tflite(tiny, str(tmp_path / "x.tflite"), precision="int8")
    assert os.listdir(tmp_path) == []


def test_calibration_sources(tmp_path, calib_dir):
    spec = common.InputSpec("image", (1, 32, 32, 3))
    from_folder = calibration.calibration_samples(calib_dir, spec)
    assert from_folder.shape == (6, 32, 32, 3) and abs(from_folder.mean()) < 2
    with tfds.testing.mock_data(num_examples=5):
        from_tfds = calibration.calibration_samples("tf_flowers", spec)
    assert from_tfds.shape == (5, 32, 32, 3)
    arrays = calibration.calibration_samples(np.ones((3, 32, 32, 3)), spec)
    assert arrays.shape == (3, 32, 32, 3)
    with pytest.raises(deploy.DeployError, match="no images"):
        calibration.calibration_samples(str(tmp_path), spec)
    with pytest.raises(deploy.DeployError, match="does not match"):
        calibration.calibration_samples(np.ones((3, 8, 8, 3)), spec)
    with pytest.raises(deploy.DeployError, match="tfds"):
        calibration.calibration_samples("no_such_dataset_xyz", spec)


def _silent_nan_convert(model, spec, precision, samples=None, **int8_options):
    """The route the facts file marks as silently broken: a concrete function of a Keras 3 model."""
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec(spec.shape, tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    return converter.convert()


def test_verification_catches_unconverted_weights(tiny, tmp_path, monkeypatch):
    """The silent-NaN trap: a real converter route that drops the weights must not produce a file."""
    spec = common.input_spec(tiny)
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(_silent_nan_convert(tiny, spec, "fp32"))
    outputs = tflite.run(str(broken), verify.sample_inputs(spec))
    with pytest.raises(deploy.DeployError, match="NaN"):
        verify.compare(common.keras_predict(tiny, verify.sample_inputs(spec)), outputs, "fp32", "TFLite")
    monkeypatch.setattr(tflite, "convert", _silent_nan_convert)
    out = tmp_path / "out.tflite"
    with pytest.raises(deploy.DeployError, match="NaN"):
        deploy.to_tflite(tiny, str(out))
    assert sorted(os.listdir(tmp_path)) == ["broken.tflite"]


def test_verification_catches_wrong_numbers(tiny):
    spec = common.input_spec(tiny)
    reference = common.keras_predict(tiny, verify.sample_inputs(spec))
    with pytest.raises(deploy.DeployError, match="exceeds"):
        verify.compare(reference, reference + 1e-3, "fp32", "TFLite")
    flipped = reference.copy()
    flipped[0] = -flipped[0]
    with pytest.raises(deploy.DeployError):
        verify.compare(reference, flipped, "fp16", "TFLite")


def test_output_handling(tiny, tmp_path):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"old")
    with pytest.raises(deploy.DeployError, match="overwrite"):
        deploy.to_tflite(tiny, str(out))
    assert out.read_bytes() == b"old"
    deploy.to_tflite(tiny, str(out), overwrite=True)
    assert out.stat().st_size > 1000
    with pytest.raises(deploy.DeployError, match="does not exist"):
        deploy.to_tflite(tiny, str(tmp_path / "missing_dir" / "m.tflite"))


def test_generic_3d_model(tmp_path):
    """The latency-table helper converts single blocks with (B, N, C) inputs."""
    inputs = keras.Input((49, 32))
    x = ef_keras.layers.Meta3D(32, resolution=(7, 7), name="block")(inputs)
    model = testing.randomize_weights(keras.Model(inputs, x))
    result = deploy.to_tflite(model, str(tmp_path / "block.tflite"), precision="int8",
                              calibration_data=verify.sample_inputs(common.input_spec(model), count=16))
    assert result["input"]["shape"] == [1, 49, 32]
    assert result["verification"]["top1_agreement"] is None
    assert result["reshape_transpose_gather"]["gather"] == 0


def test_report_table(tiny, tmp_path):
    result = deploy.to_tflite(tiny, str(tmp_path / "t.tflite"), verify=False)
    assert result["verification"] == {"verified": False}
    table = report.format_table(result)
    assert "reshape+transpose budget" in table and "skipped" in table


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["l1", "l3", "l7"])
def test_named_variants_budget_and_single_partition(variant, tmp_path):
    model = testing.randomize_weights(ef_keras.EfficientFormer(variant))
    result = deploy.to_tflite(model, str(tmp_path / f"{variant}.tflite"))
    budget = result["dimension_consistency_budget"]
    assert budget["within"], budget
    if variant == "l1":
        assert budget["reshape_transpose"] <= 8
    assert result["xnnpack"]["fully_delegated"]
    assert result["reshape_transpose_gather"]["gather"] == 0
