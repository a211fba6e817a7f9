"""EfficientFormerV2 checkpoint import: key layouts, family detection, all-or-nothing checks.

Parity through the importer is in test_v2_parity.py; here the importer's refusals. The key lists
come from the committed fixtures: the timm keys were read from timm's own state dicts and the
official names were checked by loading them into the official model code with strict=True (see
tests/fixtures/make_parity_fixtures_v2.py).
"""

import os

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import FIXTURES
from deploy.testing import randomize_weights
from ef_keras.models.efficientformer_v2.model import EfficientFormerV2S0
from ef_keras.models.efficientformer_v2.weights import official_to_timm_key
from ef_keras.registry import get_family
from ef_keras.weights import CheckpointError, checkpoint_family, load_state_dict, load_weights_from_checkpoint
from fixtures.random_weights import load_parity_fixture
from fixtures.random_weights_v2 import v2_state_dict


def _fixture(variant):
    return load_parity_fixture(os.path.join(FIXTURES, f"parity_{variant}.npz"))


@pytest.fixture(scope="module")
def s0():
    return _fixture("v2_s0"), EfficientFormerV2S0()


@pytest.mark.parametrize("variant", ["v2_s0", "v2_s1", "v2_s2", "v2_l"])
def test_every_official_key_maps_to_its_timm_key(variant):
    fixture = _fixture(variant)
    assert [official_to_timm_key(k) for k in fixture.official_keys] == list(fixture.keys)
    assert [official_to_timm_key(k) for k in fixture.keys] == list(fixture.keys)


@pytest.mark.parametrize("variant, family", [("v2_s0", "v2"), ("v2_l", "v2"), ("l1", "v1"), ("l7", "v1")])
def test_family_is_detected_from_the_keys_in_both_layouts(variant, family):
    fixture = _fixture(variant)
    assert checkpoint_family(fixture.keys) is get_family(family)
    assert checkpoint_family(fixture.official_keys) is get_family(family)


def test_v1_checkpoint_into_v2_model_names_the_family(s0, tmp_path, parity_fixture):
    _, model = s0
    path = tmp_path / "l1.safetensors"
    save_file(parity_fixture("l1").state_dict("timm"), str(path))
    with pytest.raises(CheckpointError, match=r"is an EfficientFormer checkpoint .* ef_keras.EfficientFormerL1"):
        load_weights_from_checkpoint(model, str(path))


def test_a_missing_key_assigns_nothing(s0):
    fixture, model = s0
    state = v2_state_dict(fixture)
    before = [w.copy() for w in model.get_weights()]
    del state["stages.2.blocks.5.token_mixer.talking_head1.weight"]
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\), e.g. \['stages.2.blocks.5.token_mixer.talking_"):
        load_state_dict(model, state)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_another_variant_is_refused_by_shape_or_keys(s0):
    _, model = s0
    with pytest.raises(CheckpointError, match="another variant"):
        load_state_dict(model, v2_state_dict(_fixture("v2_s1")))


def test_nan_weights_are_refused(s0):
    fixture, model = s0
    state = v2_state_dict(fixture)
    state["norm.running_var"] = np.full_like(state["norm.running_var"], np.nan)
    with pytest.raises(CheckpointError, match="NaN or Inf"):
        load_state_dict(model, state)


def test_skip_head_loads_the_backbone_into_a_new_head(tmp_path):
    fixture = _fixture("v2_s0")
    path = tmp_path / "s0.safetensors"
    save_file(v2_state_dict(fixture), str(path))
    model = EfficientFormerV2S0(classes=10)
    load_weights_from_checkpoint(model, str(path), skip_head=True)
    np.testing.assert_array_equal(model.get_layer("norm").moving_variance.numpy(),
                                  v2_state_dict(fixture)["norm.running_var"])


def test_pth_official_checkpoint(s0, tmp_path):
    fixture, model = s0
    torch = pytest.importorskip("torch", reason="torch not installed: .pth V2 import needs it")
    path = tmp_path / "s0.pth"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in v2_state_dict(fixture, "official").items()}}, str(path))
    load_weights_from_checkpoint(model, str(path))
    assert np.max(np.abs(model.predict(np.transpose(fixture.inputs(), (0, 2, 3, 1)), verbose=0)
                         - fixture.logits)) <= 1e-4


def test_checkpoint_of_another_input_size_resizes_every_bias_table(tmp_path):
    """V2 as V1: a 224x224 checkpoint loads into a 256x256 S0, each attention-bias table resized bicubically.

    S0 has 5 tables: 4 blocks' attention on 7x7 grids (stage 3's strided) and the downsampling
    attention's on the 14x14 key grid. The expected tables are Keys' bicubic resize of the saved ones
    (`tf.image.resize(..., "bicubic", antialias=True)`, what the README states); every other weight
    loads unchanged, and `at_input_shape` (the other route to 256x256) gives the same model.
    """
    import tensorflow as tf

    import ef_keras

    source = randomize_weights(EfficientFormerV2S0())
    path = tmp_path / "s0.safetensors"
    ef_keras.save_checkpoint(source, str(path))
    target = EfficientFormerV2S0(input_shape=(256, 256, 3))
    with pytest.warns(UserWarning, match=r"tables of 5 block\(s\) bicubically \(from the \(7, 7\) to the \(8, 8\) "
                                         r"token grid; from the \(14, 14\) to the \(16, 16\) token grid\)"):
        load_weights_from_checkpoint(target, str(path))
    resized = 0
    for old, new in zip(source.weights, target.weights):
        if old.path.endswith("attention_biases"):
            heads, side, new_side = old.shape[0], round(old.shape[1] ** 0.5), round(new.shape[1] ** 0.5)
            image = np.reshape(old.numpy(), (heads, side, side, 1))
            expected = tf.image.resize(image, (new_side, new_side), method="bicubic", antialias=True).numpy()
            np.testing.assert_allclose(new.numpy(), np.reshape(expected, (heads, -1)), atol=1e-6)
            resized += 1
        else:
            np.testing.assert_array_equal(new.numpy(), old.numpy())
    assert resized == 5
    x = np.random.default_rng(0).standard_normal((1, 256, 256, 3)).astype("float32")
    with pytest.warns(UserWarning, match="resized the attention-bias tables of 5 block"):
        rebuilt = source.at_input_shape((256, 256, 3))
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), target.predict(x, verbose=0), atol=1e-5)


def test_v2_checkpoint_into_v1_model_names_the_family(tmp_path):
    import ef_keras

    path = tmp_path / "s0.safetensors"
    save_file(v2_state_dict(_fixture("v2_s0")), str(path))
    model = ef_keras.EfficientFormer(ef_keras.EfficientFormerConfig(widths=(16, 16, 32, 32), depths=(1, 1, 1, 2),
                                                                    num_vit=1), input_shape=(64, 64, 3))
    with pytest.raises(CheckpointError, match=r"is an EfficientFormerV2 checkpoint .*ef_keras.EfficientFormerV2S0"):
        ef_keras.load_weights_from_checkpoint(model, str(path))


def test_save_checkpoint_writes_timm_layout_that_loads_back(s0, tmp_path):
    import ef_keras
    from safetensors.numpy import load_file

    fixture, model = s0
    state = v2_state_dict(fixture)
    load_state_dict(model, state)
    path = tmp_path / "out.safetensors"
    ef_keras.save_checkpoint(model, str(path))
    written = load_file(str(path))
    assert set(written) == set(fixture.keys)  # exactly timm's state-dict keys: timm loads it with strict=True
    for key in (k for k in fixture.keys if not k.endswith("num_batches_tracked")):
        np.testing.assert_array_equal(written[key], state[key])


def test_imagenet_weights_come_from_the_preset_through_the_keras_cache(tmp_path):
    """weights="imagenet" resolves the preset's file name (timm's snap_dist_in1k) in KERAS_HOME: nothing is fetched."""
    import subprocess
    import sys

    state = v2_state_dict(_fixture("v2_s0"))
    cache = tmp_path / "models" / "ef_keras"
    cache.mkdir(parents=True)
    save_file(state, str(cache / "efficientformerv2_s0.snap_dist_in1k.safetensors"))
    code = ("import ef_keras; m = ef_keras.EfficientFormerV2S0(weights='imagenet'); "
            "print(float(m.get_layer('norm').gamma.numpy()[0]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(float(state["norm.weight"][0]))
