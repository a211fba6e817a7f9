"""Checkpoint import: file formats, both key layouts, the imagenet path and every bad input."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import TINY, TINY_INPUT
from safetensors.numpy import save_file

import ef_keras
from ef_keras.models.efficientformer.weights import official_to_timm_key
from ef_keras.weights import CheckpointError, load_state_dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def l1_state(parity_fixture):
    return parity_fixture("l1").state_dict("timm")


@pytest.fixture(scope="module")
def l1_model():
    return ef_keras.EfficientFormerL1()


def test_official_keys_map_to_timm_keys(parity_fixture):
    fixture = parity_fixture("l1")
    assert [official_to_timm_key(k) for k in fixture.official_keys] == list(fixture.keys)


def _weights(model):
    return [w.numpy().copy() for w in model.weights]


def _assert_unchanged(model, before):
    for w, b in zip(model.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("stages.2.blocks.5.mlp.fc2.weight"), "1 missing key"),
    (lambda s: s.__setitem__("stages.9.blocks.0.extra", np.zeros(3, "float32")), "1 unexpected key"),
    (lambda s: s.__setitem__("head.weight", s["head.weight"][:10]), r"head.weight has shape \(10, 448\)"),
])
def test_mismatched_state_fails_without_loading_anything(l1_model, l1_state, edit, message):
    state = dict(l1_state)
    edit(state)
    before = _weights(l1_model)
    with pytest.raises(CheckpointError, match=message) as err:
        load_state_dict(l1_model, state)
    assert "\n" not in str(err.value)
    _assert_unchanged(l1_model, before)


def test_checkpoint_of_another_variant_is_rejected(l1_state, tmp_path):
    path = tmp_path / "l1.safetensors"
    save_file(l1_state, str(path))
    with pytest.raises(CheckpointError, match="does not match efficientformer_l3 .*another variant"):
        ef_keras.EfficientFormerL3(weights=str(path))


def test_corrupt_and_unreadable_files(tmp_path, l1_state):
    path = tmp_path / "l1.safetensors"
    save_file(l1_state, str(path))
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        ef_keras.load_weights_from_checkpoint(ef_keras.EfficientFormerL1(), str(truncated))
    with pytest.raises(CheckpointError, match="not found"):
        ef_keras.load_weights_from_checkpoint(ef_keras.EfficientFormerL1(), str(tmp_path / "nope.safetensors"))
    h5 = tmp_path / "l1.h5"
    h5.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unsupported checkpoint format '.h5'"):
        ef_keras.load_weights_from_checkpoint(ef_keras.EfficientFormerL1(), str(h5))


def test_pth_checkpoint(l1_state, tmp_path, parity_fixture):
    path = tmp_path / "l1.pth"
    try:
        import torch
    except ImportError:
        path.write_bytes(b"not used")
        with pytest.raises(CheckpointError, match="needs PyTorch: `pip install 'ef-keras\\[torch\\]'`"):
            ef_keras.load_weights_from_checkpoint(ef_keras.EfficientFormerL1(), str(path))
        pytest.skip("torch not installed: .pth import checked for its error message only")
    official = parity_fixture("l1").state_dict("official")
    torch.save({"model": {k: torch.from_numpy(v) for k, v in official.items()}}, str(path))
    model = ef_keras.EfficientFormerL1(weights=str(path))
    np.testing.assert_array_equal(model.get_layer("head").kernel.numpy(), l1_state["head.weight"].T)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read .* as a PyTorch checkpoint"):
        ef_keras.load_weights_from_checkpoint(model, str(path))


def test_fine_tuning_skips_the_heads(l1_state, tmp_path):
    path = tmp_path / "l1.safetensors"
    save_file(l1_state, str(path))
    model = ef_keras.EfficientFormerL1(classes=10)
    with pytest.raises(CheckpointError, match="head.weight"):
        ef_keras.load_weights_from_checkpoint(model, str(path))
    ef_keras.load_weights_from_checkpoint(model, str(path), skip_head=True)
    np.testing.assert_array_equal(model.get_layer("norm").gamma.numpy(), l1_state["norm.weight"])
    backbone = ef_keras.EfficientFormerL1(include_top=False, pooling="avg", weights=str(path))
    np.testing.assert_array_equal(backbone.get_layer("norm").gamma.numpy(), l1_state["norm.weight"])


def test_other_input_size_resizes_the_bias_tables(l1_state, tmp_path):
    path = tmp_path / "l1.safetensors"
    save_file(l1_state, str(path))
    with pytest.warns(UserWarning, match=r"resized the attention bias tables of 1 block\(s\) .*\(8, 8\)"):
        model = ef_keras.EfficientFormerL1(input_shape=(256, 256, 3), weights=str(path))
    table = model.get_layer("stage3_block4").token_mixer.attention_biases.numpy()
    assert table.shape == (8, 64)
    # Bicubic resizing keeps the table's corners (offset 0 and the largest offset).
    np.testing.assert_allclose(table[:, 0], l1_state["stages.3.blocks.4.token_mixer.attention_biases"][:, 0],
                               atol=0.3)


def _run(code, env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env})


def test_imagenet_weights_from_the_keras_cache(l1_state, tmp_path):
    """A local file stands in for the download: get_file finds it in KERAS_HOME and nothing is fetched."""
    cache = tmp_path / "models" / "ef_keras"
    cache.mkdir(parents=True)
    save_file(l1_state, str(cache / "efficientformer_l1.snap_dist_in1k.safetensors"))
    code = ("import ef_keras, numpy as np; m = ef_keras.EfficientFormerL1(weights='imagenet'); "
            "print(float(m.get_layer('norm').gamma.numpy()[0]))")
    out = _run(code, {"KERAS_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(float(l1_state["norm.weight"][0]))


def test_imagenet_offline_error_says_what_to_do(tmp_path):
    code = ("import dataclasses, ef_keras, ef_keras.presets as p\n"
            "p.PRESETS['l1'] = dataclasses.replace(p.PRESETS['l1'],\n"
            "                                      weights_url='file:///nonexistent/model.safetensors')\n"
            "try:\n  ef_keras.EfficientFormerL1(weights='imagenet')\n"
            "except ef_keras.CheckpointError as e:\n  print('ERR', e)")
    out = _run(code, {"KERAS_HOME": str(tmp_path)})
    line = [x for x in out.stdout.splitlines() if x.startswith("ERR")]
    assert line and "Offline?" in line[0] and "weights='/path/to/model.safetensors'" in line[0], out.stderr[-2000:]


def test_tiny_model_has_no_imagenet_weights():
    with pytest.raises(ef_keras.ModelArgumentError, match="only for l1, l3 and l7"):
        ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, weights="imagenet")


@pytest.mark.parametrize("published, changes, names", [
    ("l1", dict(depths=(3, 2, 6, 5)), "l1, l3 and l7"), ("s0", dict(num_vit=1), "s0, s1, s2 and l")])
def test_imagenet_weights_need_the_published_architecture_not_just_its_name(published, changes, names):
    """Both families compare the whole config: a custom config named "l1" is refused before any download."""
    custom = dataclasses.replace(ef_keras.registry.registered(published).config, **changes)
    with pytest.raises(ef_keras.ModelArgumentError, match=f"only for {names}.*differs from the published one"):
        ef_keras.registry.build_model(custom, weights="imagenet")
