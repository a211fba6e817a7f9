"""EfficientFormer as a pyramid backbone: parity with timm's forward_intermediates, input sizes, bias resize.

The fixtures (`pyramid_<case>.npz`, made by `fixtures/make_pyramid_fixtures.py` from really running
timm) hold no weights: the seeded weights are regenerated here with NumPy, imported through the
checkpoint importer, and the Keras pyramid compared with timm's `forward_intermediates(x, norm=True)`
at 7x7 sampled positions (P2-P4), all of P5, every 4th channel.
"""

import os
import warnings

import numpy as np
import pytest
import keras

import ef_keras
from ef_keras.weights import load_state_dict
from ef_keras.models.base import ModelArgumentError
from ef_keras.models.common_layers import resize_bias_table
from helpers import TINY, TINY_INPUT

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
TOLERANCE = 1e-4
LEVELS = ("P2", "P3", "P4", "P5")


def _sample(n):  # the generator's sample_index: 7 evenly spaced indices, borders included
    return np.unique(np.round(np.linspace(0, n - 1, 7)).astype(np.int64))


def _load_case(case):
    from fixtures import random_weights as rw

    with np.load(os.path.join(FIXTURES, f"pyramid_{case}.npz")) as z:
        data = {k: z[k] for k in z.files}
    keys = [str(k) for k in data["keys"]]
    shapes = rw.decode_shapes(data["shapes"])
    shape_of, ints, start = dict(zip(keys, shapes)), {}, 0
    for key in (str(k) for k in data["int_keys"]):
        size = int(np.prod(shape_of[key]))
        ints[key] = data["int_values"][start:start + size].reshape(shape_of[key])
        start += size
    weights = rw.random_state_dict(list(zip(keys, shapes)), int(data["seed"]), ints)
    h, w = (int(v) for v in data["image_size"])
    if (h, w) == (224, 224):
        x = rw.parity_inputs(int(data["input_seed"]))[[0, 3]]
    else:
        x = np.random.default_rng(int(data["input_seed"])).standard_normal((2, 3, h, w)).astype(np.float32)
    return data, weights, np.transpose(x, (0, 2, 3, 1))


def _sampled(features, level):
    f = np.asarray(features)
    if level != "P5":
        f = f[:, _sample(f.shape[1])][:, :, _sample(f.shape[2])]
    return f[..., ::4]


def _backbone(case):
    data, weights, x = _load_case(case)
    h, w = (int(v) for v in data["image_size"])
    model = ef_keras.EfficientFormer(str(data["variant"]), include_top=False, features_only=True, input_shape=(h, w, 3))
    load_state_dict(model, weights, source=f"pyramid_{case}")  # the classifier keys are skipped: no head
    return model, data, x


def _allowed(case):
    """Per level: 1e-4 plus twice timm's own float32 rounding error there (its distance from the
    same computation in float64, recorded by the generator).

    That second term is ~1e-5 everywhere except L3's and L7's P4, where values reach |41| after
    10-18 un-normalised Meta4D blocks and timm's float32 is itself 5e-5 / 9e-5 from exact; there
    Keras differs from timm by up to 1.0e-4 / 1.8e-4 (oneDNN on; 1.4e-4 for L7 with
    TF_ENABLE_ONEDNN_OPTS=0), i.e. about twice timm's own error. Every other level is within 1e-4.
    """
    import json

    with open(os.path.join(FIXTURES, "pyramid_fixtures.json")) as f:
        noise = json.load(f)["cases"][case]["timm_fp32_vs_fp64"]
    return {level: TOLERANCE + 2 * noise[level] for level in LEVELS}


def _max_diffs(outputs, data, case):
    """Per level, max |Keras - timm| divided by the allowed error (so <= 1 passes)."""
    allowed = _allowed(case)
    return {level: float(np.abs(_sampled(outputs[level], level) - data[level]).max()) / allowed[level]
            for level in LEVELS}


@pytest.fixture(scope="module")
def l1_rect():
    model, data, x = _backbone("l1_256x320")
    return model, data, x, model.predict(x, verbose=0)


def test_l1_rectangular_matches_timm(l1_rect):
    """256x320: stage-4 grid 8x10, timm's own Attention built at that grid (timm fixes V1 at 7x7)."""
    model, data, _, outputs = l1_rect
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "P2": (2, 64, 80, 48), "P3": (2, 32, 40, 96), "P4": (2, 16, 20, 224), "P5": (2, 8, 10, 448)}
    diffs = _max_diffs(outputs, data, "l1_256x320")
    assert max(diffs.values()) <= 1, diffs


@pytest.mark.parametrize("case", ["l1", pytest.param("l3", marks=pytest.mark.slow),
                                  pytest.param("l7", marks=pytest.mark.slow)])
def test_matches_timm_forward_intermediates(case):
    model, data, x = _backbone(case)
    diffs = _max_diffs(model.predict(x, verbose=0), data, case)
    assert max(diffs.values()) <= 1, diffs


def test_parity_breaks_when_the_pyramid_is_wired_wrong(l1_rect):
    """Each plausible wiring mistake moves the compared features far beyond the tolerance."""
    model, data, x, _ = l1_rect
    probe = keras.Model(model.input, {"pre_norm": model.get_layer("norm").input,
                                      "p4_one_block_early": model.get_layer("stage2_block4").output,
                                      "p4_after_downsample": model.get_layer("downsample3").output})
    out = probe.predict(x, verbose=0)
    tokens = np.asarray(out["pre_norm"])
    mistakes = {
        # timm's norm=False (the official det backbones' place without their GroupNorm)
        "P5 without the final norm": ("P5", tokens.reshape(2, 8, 10, -1)),
        # stage outputs off by one block, or tapped after the next downsampling (shape forced to match)
        "P4 one block early": ("P4", out["p4_one_block_early"]),
        # tokens folded column-major (H and W swapped) on the 8x10 grid
        "P5 folded column-major": ("P5", np.asarray(model.predict(x, verbose=0)["P5"]).reshape(2, 10, 8, -1)
                                   .transpose(0, 2, 1, 3)),
    }
    for name, (level, features) in mistakes.items():
        diff = float(np.abs(_sampled(features, level) - data[level]).max())
        assert diff > 100 * TOLERANCE, (name, diff)


def test_pyramid_shapes_at_two_input_sizes():
    for size, grid in (((64, 96, 3), (2, 3)), ((128, 128, 3), (4, 4))):
        model = ef_keras.EfficientFormer(TINY, include_top=False, input_shape=size)
        shapes = {k: tuple(v.shape[1:]) for k, v in model.pyramid_outputs.items()}
        h, w = grid
        assert shapes == {"P2": (8 * h, 8 * w, 16), "P3": (4 * h, 4 * w, 32), "P4": (2 * h, 2 * w, 48),
                          "P5": (h, w, 64)}
        features = keras.Model(model.inputs, model.pyramid_outputs)([np.zeros((1, *size), "float32")])
        assert tuple(features["P5"].shape) == (1, h, w, 64)


def test_p5_is_the_normalised_final_map():
    """With include_top=False, pooling=None the model's output is the final map; P5 is exactly it."""
    plain = ef_keras.EfficientFormer(TINY, include_top=False, input_shape=TINY_INPUT)
    pyramid = keras.Model(plain.inputs, plain.pyramid_outputs)
    x = np.random.default_rng(0).normal(size=(2, *TINY_INPUT)).astype("float32")
    np.testing.assert_array_equal(pyramid.predict(x, verbose=0)["P5"], plain.predict(x, verbose=0))


def test_variable_input_size_without_attention():
    cfg = ef_keras.EfficientFormerConfig(widths=(16, 32, 48, 64), depths=(1, 1, 1, 1), num_vit=0)
    model = ef_keras.EfficientFormer(cfg, include_top=False, features_only=True, input_shape=(None, None, 3))
    for h, w in ((64, 96), (160, 32)):
        out = model.predict(np.zeros((1, h, w, 3)), verbose=0)
        assert tuple(out["P5"].shape) == (1, h // 32, w // 32, 64) and tuple(out["P2"].shape) == (1, h // 4, w // 4, 16)


def test_features_only_round_trip(tmp_path):
    model = ef_keras.EfficientFormer(TINY, include_top=False, features_only=True, input_shape=TINY_INPUT)
    x = np.random.default_rng(1).normal(size=(1, *TINY_INPUT)).astype("float32")
    before = model.predict(x, verbose=0)
    model.save(tmp_path / "f.keras")
    loaded = keras.saving.load_model(tmp_path / "f.keras")
    after = loaded.predict(x, verbose=0)
    assert sorted(loaded.pyramid_outputs) == list(LEVELS)
    for level in LEVELS:
        np.testing.assert_array_equal(after[level], before[level])


def _keys_cubic(n_in, n_out, a=-0.5):
    """Keys' cubic convolution matrix (half-pixel centres, weights renormalised at the borders)."""
    def kernel(t):
        t = np.abs(t)
        return np.where(t <= 1, (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1,
                        np.where(t < 2, a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a, 0.0))
    src = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    m = kernel(src[:, None] - np.arange(n_in)[None, :])
    return m / m.sum(1, keepdims=True)


@pytest.mark.parametrize("old, new", [((7, 7), (16, 16)), ((7, 7), (8, 10)), ((2, 3), (4, 4)), ((7, 7), (7, 7))])
def test_bias_resize_is_the_bicubic_formula(old, new):
    table = np.random.default_rng(0).normal(size=(8, old[0] * old[1])).astype("float32")
    expected = np.einsum("yi,hij,xj->hyx", _keys_cubic(old[0], new[0]), table.reshape(8, *old),
                         _keys_cubic(old[1], new[1])).reshape(8, -1)
    np.testing.assert_allclose(resize_bias_table(table, old, new), expected, atol=1e-5)


def test_at_input_shape_keeps_weights_and_resizes_bias_tables():
    model = ef_keras.EfficientFormer(TINY, include_top=False, features_only=True, input_shape=(64, 96, 3))
    for v in model.weights:
        v.assign(np.random.default_rng(len(v.path)).normal(size=v.shape).astype("float32") * 0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bigger = model.at_input_shape((128, 128, 3))
    messages = [str(w.message) for w in caught if "attention-bias" in str(w.message)]
    assert len(messages) == 1 and "(2, 3)" in messages[0] and "(4, 4)" in messages[0] and "\n" not in messages[0]
    old_block, new_block = (m.get_layer("stage3_block2").token_mixer for m in (model, bigger))
    np.testing.assert_allclose(np.asarray(new_block.attention_biases),
                               resize_bias_table(np.asarray(old_block.attention_biases), (2, 3), (4, 4)))
    np.testing.assert_array_equal(bigger.get_layer("stem").get_weights()[0], model.get_layer("stem").get_weights()[0])
    assert tuple(bigger.pyramid_outputs["P5"].shape[1:]) == (4, 4, 64)
    back = bigger.at_input_shape((64, 96, 3))  # back to the first grid: the convolutional part is untouched
    x = np.random.default_rng(2).normal(size=(1, 64, 96, 3)).astype("float32")
    out_back, out_orig = back.predict(x, verbose=0), model.predict(x, verbose=0)
    np.testing.assert_array_equal(out_back["P2"], out_orig["P2"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_shape=(100, 100, 3)), "multiples of 32"),
    (dict(input_shape=(None, None, 3)), "fixed input size"),
    (dict(features_only=True), "include_top=False"),
    (dict(include_top=False, pooling="avg", features_only=True), "pooling=None"),
    (dict(include_top=False, features_only="yes"), "features_only must be True or False"),
])
def test_bad_input_is_one_line(kwargs, message):
    with pytest.raises(ModelArgumentError, match=message) as info:
        ef_keras.EfficientFormer(TINY, **{"input_shape": TINY_INPUT, **kwargs})
    assert "\n" not in str(info.value)


def test_pyramid_outputs_of_a_classifier_is_one_line_error():
    model = ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=3)
    with pytest.raises(ModelArgumentError, match="include_top=True") as info:
        model.pyramid_outputs
    assert "\n" not in str(info.value)


def test_semantic_fpn_on_efficientformer_round_trip(tmp_path):
    from ef_keras.tasks.segmentation import SemanticFPN

    backbone = ef_keras.EfficientFormer(TINY, include_top=False, input_shape=TINY_INPUT)
    model = SemanticFPN(backbone, num_classes=4, fpn_channels=32, head_channels=32)
    x = np.random.default_rng(3).normal(size=(1, *TINY_INPUT)).astype("float32")
    expected = model.predict(x, verbose=0)
    assert expected.shape == (1, 64, 64, 4)
    model.save(tmp_path / "seg.keras")
    loaded = keras.saving.load_model(tmp_path / "seg.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-5)
    assert isinstance(loaded.backbone, ef_keras.EfficientFormer)
