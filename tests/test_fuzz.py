"""Fuzzed public API (issue 23): every call returns a correct, finite result or raises the project's error.

Hypothesis draws arguments well outside what the API documents (wrong ranks, channel counts,
dtypes, NaN / Inf, negative and zero sizes, random bytes for checkpoint files, random JSON for
LUTs and manifests). The property of each test: the call either returns a value that is checked
against an independent statement of what it must be, or raises `EfKerasError` with a one-line
message; any other exception type fails the test (hypothesis prints the smallest input that
does). The draws are derandomized (the same every run: a default-suite test must not flake);
change the seed locally with `--hypothesis-seed` to explore further. The readers of `android_ios_bench` keep their own one-line error class, `LUTError`, free
of TensorFlow. Budgeted to run in the default suite: all of it well under 60 s on 2 busy cores.
"""

import json
import math
import os
import warnings

import numpy as np
import pytest

from helpers import TINY, TINY_CONFIGS
from safetensors.numpy import save_file

import ef_keras
from android_ios_bench import lut as L
from ef_keras.errors import EfKerasError
from ef_keras.weights import read_state_dict

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis: pip install 'ef-keras[test]'")
from hypothesis import HealthCheck, assume, given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
#: timm's ImageNet normalisation, written out here (not read from the code under test).
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])

small_float = st.floats(allow_nan=True, allow_infinity=True, width=32)
sizes = st.one_of(st.integers(-3, 40), st.tuples(st.integers(-1, 40), st.integers(-1, 40)), st.none(),
                  st.floats(allow_nan=True), st.booleans(), st.text(max_size=2))
dtypes = st.sampled_from([np.uint8, np.float32, np.float64, np.int32, np.bool_])
#: Pixel values in and out of [0, 255], NaN and Inf among them.
float_pixels = st.one_of(st.floats(0, 255, width=32), st.floats(-1e6, 1e6, width=32),
                         st.sampled_from([np.nan, np.inf, -np.inf]))
rgb_shapes = st.tuples(st.integers(0, 12), st.integers(0, 12), st.just(3))
#: (H, W, 3) float images with NaN / Inf among the values, of any dtype, and of any shape at all.
pixels = st.one_of(
    hnp.arrays(np.float32, rgb_shapes, elements=float_pixels),
    hnp.arrays(dtypes, rgb_shapes, elements=None),
    hnp.arrays(dtypes, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=12), elements=None))


def one_line_project_error(call):
    """Runs `call`; returns (True, result) or (False, error) after checking the error is ours and one line."""
    try:
        return True, call()
    except EfKerasError as e:
        assert str(e) and "\n" not in str(e), repr(e)
        return False, e


@FUZZ
@given(image=pixels, image_size=sizes,
       crop_pct=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-1, 2),
                          st.floats(1e-300, 1e-2)),
       interpolation=st.sampled_from([None, "bicubic", "bilinear", "nearest", "cubic", ""]))
def test_eval_transform(image, image_size, crop_pct, interpolation):
    ok, out = one_line_project_error(lambda: ef_keras.eval_transform(image, image_size, crop_pct, interpolation))
    if ok:
        out = out.numpy()
        size = 224 if image_size is None else image_size
        expected = (size, size) if isinstance(size, int) else tuple(size)
        assert out.shape == (*expected, 3)
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 255
        assert image.ndim == 3 and image.shape[-1] == 3 and min(image.shape) > 0


@FUZZ
@given(images=pixels, preset=st.sampled_from([None, "l1", "s0", "efficientformerv2_l", "l9", "", 3]))
def test_preprocess_input(images, preset):
    ok, out = one_line_project_error(lambda: ef_keras.preprocess_input(images, preset=preset))
    if ok:
        assert images.ndim in (3, 4) and images.shape[-1] == 3 and preset not in ("l9", "", 3)
        expected = (images.astype(np.float64) / 255.0 - MEAN) / STD
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
        assert np.isfinite(out).all()


@FUZZ
@given(preds=hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64]),
                        st.tuples(st.integers(0, 3), st.sampled_from([1000, 999, 1])), elements=None),
       top=st.one_of(st.integers(-2, 1002), st.booleans(), st.floats()))
def test_decode_predictions(preds, top):
    ok, out = one_line_project_error(lambda: ef_keras.decode_predictions(preds, top=top))
    if ok:
        assert preds.shape[1] == 1000 and np.isfinite(preds).all() and isinstance(top, int) and 1 <= top <= 1000
        for row, decoded in zip(preds, out):
            scores = [score for _, _, score in decoded]
            assert len(decoded) == top and scores == sorted(scores, reverse=True)
            assert scores[0] == row.max() and all(math.isfinite(s) for s in scores)


int_like = st.one_of(st.integers(-64, 256), st.booleans(), st.floats(allow_nan=True), st.just("32"))


@FUZZ
@given(widths=st.lists(int_like, min_size=0, max_size=5), depths=st.lists(int_like, min_size=0, max_size=5),
       num_vit=int_like, layer_scale=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1, 2)),
       family=st.sampled_from(["v1", "v2"]))
def test_config_constructors(widths, depths, num_vit, layer_scale, family):
    data = {**TINY_CONFIGS[family].to_dict(), "widths": widths, "depths": depths, "num_vit": num_vit,
            "layer_scale_init": layer_scale}
    cls = type(TINY_CONFIGS[family])
    ok, config = one_line_project_error(lambda: cls.from_dict(data))
    if ok:  # what was accepted is what the documented rules allow, and round-trips through JSON
        assert all(isinstance(w, int) and w > 0 and w % 8 == 0 for w in config.widths)
        assert math.isfinite(config.layer_scale_init) and config.layer_scale_init > 0
        assert cls.from_dict(json.loads(config.to_json())) == config


@pytest.fixture(scope="module")
def tiny_models():
    return {family: ef_keras.registry.build_model(config, input_shape=(64, 64, 3), classes=10)
            for family, config in TINY_CONFIGS.items()}


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.one_of(st.tuples(st.sampled_from([-32, 0, 31, 32, 96]), st.sampled_from([0, 32, 64, 100])),
                       st.tuples(st.sampled_from([32, 96]), st.sampled_from([32, 64]), st.sampled_from([1, 3, 4]))),
       family=st.sampled_from(["v1", "v2"]))
def test_at_input_shape(tiny_models, shape, family):
    model = tiny_models[family]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the bias-table resize warning
        ok, rebuilt = one_line_project_error(lambda: model.at_input_shape(shape))
    if ok:
        assert len(shape) == 3 and shape[2] == 3 and shape[0] % 32 == 0 and shape[1] % 32 == 0
        x = np.random.default_rng(0).uniform(-1, 1, (1, *shape)).astype("float32")
        out = rebuilt(x, training=False).numpy()
        assert out.shape == (1, 10) and np.isfinite(out).all()


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")
    model = ef_keras.EfficientFormer(TINY, input_shape=(64, 64, 3), classes=10)
    ef_keras.save_checkpoint(model, path)
    with open(path, "rb") as f:
        return f.read(), model


@FUZZ
@given(data=st.binary(max_size=512), ext=st.sampled_from([".safetensors", ".pth", ".pt", ".bin"]))
def test_checkpoint_reader_on_random_bytes(tmp_path, data, ext):
    path = tmp_path / f"random{ext}"
    path.write_bytes(data)
    ok, state = one_line_project_error(lambda: read_state_dict(str(path)))
    if ok:  # bytes that happen to be a valid file: a mapping of names to finite arrays
        assert all(isinstance(k, str) and np.isfinite(v).all() for k, v in state.items())


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0, 1, exclude_max=True), flip=st.integers(0, 2**31))
def test_checkpoint_reader_on_truncated_and_corrupted_files(tmp_path, real_checkpoint, cut, flip):
    data, _ = real_checkpoint
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:int(cut * len(data))])
    ok, _ = one_line_project_error(lambda: read_state_dict(str(truncated)))
    assert not ok
    corrupted = bytearray(data)
    corrupted[flip % len(data)] ^= 0xFF
    (tmp_path / "flip.safetensors").write_bytes(bytes(corrupted))
    one_line_project_error(lambda: read_state_dict(str(tmp_path / "flip.safetensors")))


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=st.sampled_from([np.nan, np.inf, -np.inf]), which=st.integers(0, 10**6))
def test_checkpoint_with_non_finite_tensors_is_refused(tmp_path, real_checkpoint, bad, which):
    from safetensors.numpy import load

    data, model = real_checkpoint
    state = {k: v.copy() for k, v in load(data).items()}
    floats = sorted(k for k, v in state.items() if v.dtype.kind == "f" and v.size)
    key = floats[which % len(floats)]
    state[key].flat[which % state[key].size] = bad
    path = str(tmp_path / "bad.safetensors")
    save_file(state, path)
    ok, error = one_line_project_error(lambda: ef_keras.load_weights_from_checkpoint(model, path))
    assert not ok and key in str(error)


# --------------------------------------------------------------------------- LUT and manifest readers
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                      max_size=3), max_leaves=12)


def _real(name):
    with open(os.path.join(ROOT, "android_ios_bench", "luts", name), encoding="utf-8") as f:
        return json.load(f)


def _mutate(doc, path, value):
    """`doc` with the item at `path` (a list of key choices, resolved modulo each level's size) set to `value`."""
    doc = json.loads(json.dumps(doc))
    node = doc
    for i, choice in enumerate(path):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = keys[choice % len(keys)]
        if i == len(path) - 1 or not isinstance(node[key], (dict, list)):
            node[key] = value
            break
        node = node[key]
    return doc


def reader_error_or_valid(call):
    try:
        return call()
    except L.LUTError as e:
        assert str(e) and "\n" not in str(e), repr(e)


@FUZZ
@given(doc=json_values)
def test_lut_reader_on_random_json(tmp_path, doc):
    path = tmp_path / "lut.json"
    path.write_text(json.dumps(doc))
    assert reader_error_or_valid(lambda: L.load_lut(str(path))) is None  # random JSON is never a valid LUT


@settings(FUZZ, max_examples=20)
@given(path=st.lists(st.integers(0, 50), min_size=1, max_size=5), value=json_values,
       name=st.sampled_from(["host_x86_2core_fp32.json", "host_x86_2core_fp32_v2.json"]))
def test_lut_reader_on_mutated_luts(tmp_path, path, value, name):
    target = tmp_path / "lut.json"
    target.write_text(json.dumps(_mutate(_real(name), path, value)))
    doc = reader_error_or_valid(lambda: L.load_lut(str(target)))
    if doc is not None:  # accepted: every latency is still a positive finite number
        assert all(math.isfinite(e["median_ms"]) and e["median_ms"] > 0 for e in doc["entries"].values())


@FUZZ
@given(doc=json_values, raw=st.binary(max_size=64))
def test_manifest_reader_on_random_json_and_bytes(tmp_path, doc, raw):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(doc))
    assert reader_error_or_valid(lambda: L.load_manifest(str(path))) is None
    path.write_bytes(raw)
    assert reader_error_or_valid(lambda: L.load_manifest(str(path))) is None


@FUZZ
@given(path=st.lists(st.integers(0, 50), min_size=1, max_size=4), value=json_values)
def test_manifest_reader_on_mutated_manifests(tmp_path, path, value):
    space = _real("host_x86_2core_fp32.json")["search_space"]
    entry = {"key": "conv_stem.w48", "kind": "conv_stem", "unit": {"width": 48}, "input_shape": [1, 224, 224, 3],
             "input_dtype": "float32", "tflite": "tflite/conv_stem.w48.tflite", "coreml": None}
    manifest = {"format": L.MANIFEST_FORMAT, "version": 1, "created": "2026-12-06T00:00:00Z", "precision": "fp32",
                "search_space": space, "entries": [entry]}
    source = tmp_path / "good.json"
    source.write_text(json.dumps(manifest))
    assume(reader_error_or_valid(lambda: L.load_manifest(str(source))) is not None)
    target = tmp_path / "manifest.json"
    target.write_text(json.dumps(_mutate(manifest, path, value)))
    reader_error_or_valid(lambda: L.load_manifest(str(target)))
