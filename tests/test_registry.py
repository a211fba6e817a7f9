"""The registry battery: every registered variant, and the tiny config of each family, get the same checks.

Adding a variant to the registry (`ef_keras.registry.register_model`) adds it here with no
new test code (timm's `tests/test_models.py`); the checks are `helpers.run_model_test`
(keras-hub's `run_backbone_test`): build and forward, `get_config` completeness, `.keras`
round trip, checkpoint export -> import round trip; plus TFLite conversion with verification
(tiny configs by default, named variants `slow`). The heavy round trips of the large named
variants are `slow`, the smallest variant of each family runs them by default.
"""

import pytest
from helpers import TINY_CONFIGS, run_model_test, tiny_model

import ef_keras
from deploy.testing import randomize_weights
from ef_keras.models.config import ConfigError
from ef_keras.registry import architecture, family_of, get_family, list_models, registered

#: The smallest named variant of each family runs the round trips in the default suite.
DEFAULT_SUITE = {"l1", "s0"}


def _named(check_all_by_default=False):
    """Every registered variant; the larger ones marked slow unless `check_all_by_default`."""
    return [pytest.param(n, marks=() if check_all_by_default or n in DEFAULT_SUITE else pytest.mark.slow)
            for n in list_models()]


def _builder(name):
    """`build(**kwargs)` of a registered variant, or of the tiny architecture of family "v1"/"v2"."""
    if name in TINY_CONFIGS:
        return lambda **kw: tiny_model(name, **kw)
    return registered(name).builder


@pytest.mark.parametrize("name", _named(check_all_by_default=True))
def test_every_variant_builds_at_its_published_size_and_lists_its_config(name):
    model = run_model_test(_builder(name), round_trips=False)
    assert model.input_shape == (None, 224, 224, 3) and model.config is registered(name).config


@pytest.mark.parametrize("name", _named() + list(TINY_CONFIGS))
def test_standard_checks_with_keras_file_and_checkpoint_round_trips(name, tmp_path):
    run_model_test(_builder(name), tmp_path)


@pytest.mark.parametrize("family, model_class, variants", [
    ("v1", ef_keras.EfficientFormer, ["l1", "l3", "l7"]), ("v2", ef_keras.EfficientFormerV2, ["s0", "s1", "s2", "l"])])
def test_family_of_answers_for_every_kind_of_thing(family, model_class, variants):
    """The one "which family is this": a model, a config, a config dict, a variant name, a family name."""
    expected = get_family(family)
    model = tiny_model(family)
    assert expected.model_class is model_class and list_models(family) == variants
    things = [model, model.config, model.config.to_dict(), variants[0], f"efficientformer{family}_{variants[-1]}",
              family, registered(variants[0]).config]
    assert [family_of(t) for t in things] == [expected] * len(things)
    assert type(architecture(model.config.to_dict())) is expected.config_class


def test_family_of_refuses_what_it_cannot_tell():
    with pytest.raises(ConfigError, match="unknown model family 'v9'"):
        family_of({"family": "v9"})
    with pytest.raises(ConfigError, match="cannot tell the model family of int 3"):
        family_of(3)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) for n in list_models()]
                         + list(TINY_CONFIGS))
def test_tflite_conversion_verifies(name, tmp_path):
    from deploy.tflite import to_tflite

    model = randomize_weights(_builder(name)())
    report = to_tflite(model, str(tmp_path / "m.tflite"))  # raises DeployError if the numerics disagree
    metrics = report["verification"]
    assert metrics["max_rel_diff"] <= metrics["tolerance"] and report["xnnpack"]["partitions"] == 1
