"""Parity with timm's EfficientFormerV2 S0/S1/S2/L (eval mode), through the V2 checkpoint importer.

The fixtures hold no weights: timm was run with seeded NumPy weights far from their init (layer
scales, talking heads, the strided attention and every bias table matter; see
tests/fixtures/make_parity_fixtures_v2.py) and its logits were stored. The same weights are
regenerated here, written as real checkpoint files in both key layouts, imported, and the Keras
logits compared. The mutation tests make the three mistakes a V2 port is likely to make and show
that each breaks parity: talking heads 1 and 2 exchanged, the local-V branch left out, and the
strided attention upsampled with the wrong mode.
"""

import os

import numpy as np
import pytest
from keras import ops
from safetensors.numpy import save_file

import ef_keras.models.efficientformer_v2.layers as layers_v2
from ef_keras.weights import load_state_dict, load_weights_from_checkpoint
from ef_keras.models.efficientformer_v2.model import EfficientFormerV2, EfficientFormerV2S0
from conftest import FIXTURES
from fixtures.random_weights import load_parity_fixture
from fixtures.random_weights_v2 import v2_state_dict

TOLERANCE = 1e-4


def _nhwc(fixture):
    return np.transpose(fixture.inputs(), (0, 2, 3, 1))


def _max_diff_eager(model, fixture):
    """Eager call (not predict): layers run their current Python code, so a monkeypatch takes effect."""
    return float(np.max(np.abs(ops.convert_to_numpy(model(_nhwc(fixture), training=False)) - fixture.logits)))


@pytest.fixture(scope="module")
def s0():
    return load_parity_fixture(os.path.join(FIXTURES, "parity_v2_s0.npz")), EfficientFormerV2S0()


@pytest.mark.parametrize("layout", ["timm", "official"])
def test_s0_matches_timm_through_a_safetensors_checkpoint(s0, layout, tmp_path):
    fixture, model = s0
    path = tmp_path / f"s0_{layout}.safetensors"
    save_file(v2_state_dict(fixture, layout), str(path))
    load_weights_from_checkpoint(model, str(path))
    logits = model.predict(_nhwc(fixture), verbose=0)
    assert float(np.max(np.abs(logits - fixture.logits))) <= TOLERANCE
    head, dist = model.heads_model().predict(_nhwc(fixture), verbose=0)
    np.testing.assert_allclose(head, fixture.head_logits, atol=TOLERANCE)
    np.testing.assert_allclose(dist, fixture.dist_logits, atol=TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["s1", "s2", "l"])
def test_s1_s2_l_match_timm(variant, tmp_path):
    fixture = load_parity_fixture(os.path.join(FIXTURES, f"parity_v2_{variant}.npz"))
    model = EfficientFormerV2(variant)
    for layout in ("timm", "official"):
        path = tmp_path / f"{variant}_{layout}.safetensors"
        save_file(v2_state_dict(fixture, layout), str(path))
        load_weights_from_checkpoint(model, str(path))
        assert float(np.max(np.abs(model.predict(_nhwc(fixture), verbose=0) - fixture.logits))) <= TOLERANCE


def _swap_talking_heads(state):
    out = dict(state)
    for key in state:
        if "talking_head1." in key:
            other = key.replace("talking_head1.", "talking_head2.")
            out[key], out[other] = state[other], state[key]
    return out


def _drop_local_v(state):
    """A port that leaves the local-V branch out: its BN output is zero (gamma = beta = 0)."""
    return {k: np.zeros_like(v) if "token_mixer.v_local.bn." in k and k.endswith(("weight", "bias")) else v
            for k, v in state.items()}


@pytest.mark.parametrize("mutate", [_swap_talking_heads, _drop_local_v])
def test_parity_breaks_when_the_attention_is_ported_wrong(s0, mutate):
    fixture, model = s0
    state = v2_state_dict(fixture)
    load_state_dict(model, state)
    assert _max_diff_eager(model, fixture) <= TOLERANCE
    load_state_dict(model, mutate(state))
    assert _max_diff_eager(model, fixture) > 10 * TOLERANCE
    load_state_dict(model, state)


def test_parity_breaks_with_nearest_upsampling(s0, monkeypatch):
    fixture, model = s0
    load_state_dict(model, v2_state_dict(fixture))
    assert _max_diff_eager(model, fixture) <= TOLERANCE

    def nearest(x):
        _, h, w, _ = x.shape
        return ops.image.resize(x, (2 * h, 2 * w), interpolation="nearest")

    monkeypatch.setattr(layers_v2, "upsample_bilinear_2x", nearest)
    assert _max_diff_eager(model, fixture) > 10 * TOLERANCE


def test_pyramid_outputs_match_timm_stage_outputs(tmp_path):
    """P2-P4 against timm's stage outputs (spatial means recorded by the generator); P5 feeds the heads."""
    fixture = load_parity_fixture(os.path.join(FIXTURES, "parity_v2_s0.npz"))
    path = tmp_path / "s0.safetensors"
    save_file(v2_state_dict(fixture), str(path))
    backbone = EfficientFormerV2("s0", include_top=False, features_only=True, weights=str(path))
    pyramid = backbone.predict(_nhwc(fixture), verbose=0)
    assert {k: v.shape[1:] for k, v in pyramid.items()} == {
        "P2": (56, 56, 32), "P3": (28, 28, 48), "P4": (14, 14, 96), "P5": (7, 7, 176)}
    for stage, level in enumerate(("P2", "P3", "P4")):
        np.testing.assert_allclose(pyramid[level].mean(axis=(1, 2)), fixture.stage_means[stage], atol=TOLERANCE)
    head = backbone.get_layer("norm")  # P5 is the final BatchNorm's output, what the classifier pools
    assert backbone.pyramid_outputs["P5"] is head.output
