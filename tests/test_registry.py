"""The registry battery: every registered variant, and small configs of each family, get the same checks.

Adding a variant to the registry (`ef_keras.registry.register_model`) adds it here with no
new test code (timm's `tests/test_models.py`, keras-hub's `run_backbone_test`):

- build and forward at the published input size;
- `.keras` round trip with identical outputs;
- `get_config` completeness: every constructor argument of the model and of each of its
  ef_keras layers is a key of `get_config()`, so a key missing from `get_config` fails
  here (a clone-vs-original comparison would miss it on both sides);
- checkpoint export (timm layout) -> import round trip with identical outputs;
- TFLite conversion with verification (small configs by default, named variants `slow`).

The heavy round trips of the large named variants are `slow`, the smallest variant of each
family runs them by default.
"""

import inspect

import keras
import numpy as np
import pytest

import ef_keras
from ef_keras.config_v2 import EfficientFormerV2Config
from ef_keras.model_v2 import EfficientFormerV2
from ef_keras.registry import list_models, registered

#: The smallest named variant of each family runs every check in the default suite.
DEFAULT_SUITE = {"l1", "s0"}
#: Constructor arguments that are not configuration (inputs to the constructor only).
NOT_CONFIG = {"self", "kwargs", "weights", "input_tensor"}


def _named(check_all_by_default=False):
    """Every registered variant; the larger ones marked slow unless `check_all_by_default`."""
    return [pytest.param(n, marks=() if check_all_by_default or n in DEFAULT_SUITE else pytest.mark.slow)
            for n in list_models()]


def small_models():
    """A small architecture of each family, at a small input size (fast enough for every check)."""
    v1 = ef_keras.EfficientFormerConfig(widths=(16, 16, 32, 32), depths=(1, 1, 1, 2), num_vit=1, name="tiny")
    v2 = EfficientFormerV2Config(widths=(16, 16, 32, 32), depths=(1, 1, 2, 2), num_vit=1,
                                 mlp_ratios=((4,), (4,), (4, 3), (3, 4)), name="tiny")
    return {"v1_tiny": lambda **kw: ef_keras.EfficientFormer(v1, input_shape=(64, 64, 3), classes=10, **kw),
            "v2_tiny": lambda **kw: EfficientFormerV2(v2, input_shape=(64, 64, 3), classes=10, **kw)}


def _build(name, **kwargs):
    return small_models()[name](**kwargs) if name in small_models() else registered(name).builder(**kwargs)


def _randomise(model, seed=0):
    """Weights far from init (layer scales of 1e-5 would hide every block)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "int" in str(w.dtype):
            continue
        value = rng.uniform(0.5, 1.5, w.shape) if "variance" in w.path else rng.standard_normal(w.shape) * 0.2
        w.assign(value.astype(w.dtype))
    return model


def _images(model, n=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *model.input_shape[1:])).astype("float32")


@pytest.mark.parametrize("name", _named(check_all_by_default=True) + list(small_models()))
def test_builds_and_runs(name):
    model = _build(name)
    out = model.predict(_images(model, 1), verbose=0)
    assert out.shape == (1, model.classes) and np.isfinite(out).all()
    if name in list_models():
        assert model.input_shape == (None, 224, 224, 3) and model.config is registered(name).config


@pytest.mark.parametrize("name", _named(check_all_by_default=True) + list(small_models()))
def test_get_config_lists_every_constructor_argument(name):
    model = _build(name)
    _assert_complete(model.__class__, model.get_config())
    custom = {layer.__class__ for layer in model._flatten_layers(include_self=False, recursive=True)
              if keras.saving.get_registered_name(layer.__class__).startswith("ef_keras>")}
    assert custom, "the model should be made of ef_keras layers"
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.__class__ in custom:
            _assert_complete(layer.__class__, layer.get_config())


def _assert_complete(cls, config):
    params = set(inspect.signature(cls.__init__).parameters) - NOT_CONFIG
    missing = sorted(params - set(config))
    assert not missing, f"{cls.__name__}.get_config() lacks constructor argument(s) {missing}"


@pytest.mark.parametrize("name", _named() + list(small_models()))
def test_keras_file_round_trip(name, tmp_path):
    model = _randomise(_build(name))
    x = _images(model)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded) is type(model) and loaded.config == model.config
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.parametrize("name", _named() + list(small_models()))
def test_checkpoint_export_import_round_trip(name, tmp_path):
    model = _randomise(_build(name))
    path = tmp_path / "m.safetensors"
    ef_keras.save_checkpoint(model, path)
    other = _randomise(_build(name), seed=1)
    x = _images(model)
    assert not np.allclose(model.predict(x, verbose=0), other.predict(x, verbose=0))
    ef_keras.load_weights_from_checkpoint(other, str(path))
    np.testing.assert_array_equal(model.predict(x, verbose=0), other.predict(x, verbose=0))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) for n in list_models()]
                         + list(small_models()))
def test_tflite_conversion_verifies(name, tmp_path):
    from deploy.tflite import to_tflite

    model = _randomise(_build(name))
    report = to_tflite(model, str(tmp_path / "m.tflite"))  # raises DeployError if the numerics disagree
    metrics = report["verification"]
    assert metrics["max_rel_diff"] <= metrics["tolerance"] and report["xnnpack"]["partitions"] == 1
