"""Parity with timm's EfficientFormer L1/L3/L7 (eval mode), through our checkpoint importer.

The fixtures hold no weights: timm was run with seeded NumPy weights (far from init, so every
block matters) and its logits were stored. Here the same weights are regenerated, written as a
real checkpoint file, imported, and the Keras logits compared. The mutation tests show that a
wrongly mapped weight (q/k order, a transposed bias table) breaks parity.
"""

import numpy as np
import pytest
from safetensors.numpy import save_file

import ef_keras
from ef_keras.weights import load_state_dict

TOLERANCE = 1e-4


def _nhwc(fixture):
    return np.transpose(fixture.inputs(), (0, 2, 3, 1))


def _max_diff(model, fixture):
    return float(np.max(np.abs(model.predict(_nhwc(fixture), verbose=0) - fixture.logits)))


@pytest.fixture(scope="module")
def l1(parity_fixture):
    return parity_fixture("l1"), ef_keras.EfficientFormerL1()


@pytest.mark.parametrize("layout", ["timm", "official"])
def test_l1_matches_timm_through_a_safetensors_checkpoint(l1, layout, tmp_path):
    fixture, model = l1
    path = tmp_path / f"l1_{layout}.safetensors"
    save_file(fixture.state_dict(layout), str(path))
    ef_keras.load_weights_from_checkpoint(model, str(path))
    assert _max_diff(model, fixture) <= TOLERANCE
    head, dist = model.heads_model().predict(_nhwc(fixture), verbose=0)
    np.testing.assert_allclose(head, fixture.head_logits, atol=TOLERANCE)
    np.testing.assert_allclose(dist, fixture.dist_logits, atol=TOLERANCE)


@pytest.mark.parametrize("variant", ["l3", "l7"])
def test_l3_l7_match_timm(variant, parity_fixture, tmp_path):
    fixture = parity_fixture(variant)
    model = ef_keras.EfficientFormer(variant, weights=None)
    path = tmp_path / f"{variant}.safetensors"
    save_file(fixture.state_dict("timm"), str(path))
    ef_keras.load_weights_from_checkpoint(model, str(path))
    assert _max_diff(model, fixture) <= TOLERANCE


def _qkv_q_k_swapped(state, key):
    """Swap q and k inside every head of an interleaved (1536, C) qkv weight."""
    w = state[key].reshape(8, 192, -1).copy()
    w[:, :32], w[:, 32:64] = state[key].reshape(8, 192, -1)[:, 32:64], state[key].reshape(8, 192, -1)[:, :32]
    return w.reshape(state[key].shape)


def _bias_table_transposed(state, key):
    """Swap the row and column offsets of a (heads, 49) table."""
    return state[key].reshape(8, 7, 7).transpose(0, 2, 1).reshape(8, 49).copy()


def _qkv_read_as_blocks(state, key):
    """Reorder an interleaved per-head qkv into [all q | all k | all v] (a plausible mis-port)."""
    w = state[key].reshape(8, 192, -1)
    return np.concatenate([w[:, :32].reshape(256, -1), w[:, 32:64].reshape(256, -1),
                           w[:, 64:].reshape(1024, -1)]).reshape(state[key].shape)


@pytest.mark.parametrize("mutate, suffix", [
    (_qkv_q_k_swapped, "token_mixer.qkv.weight"),
    (_bias_table_transposed, "token_mixer.attention_biases"),
    (_qkv_read_as_blocks, "token_mixer.qkv.weight"),
])
def test_parity_breaks_when_a_weight_is_mapped_wrong(l1, mutate, suffix):
    fixture, model = l1
    state = fixture.state_dict("timm")
    key = f"stages.3.blocks.4.{suffix}"
    load_state_dict(model, state)
    assert _max_diff(model, fixture) <= TOLERANCE
    state[key] = mutate(state, key)
    load_state_dict(model, state)
    assert _max_diff(model, fixture) > 10 * TOLERANCE


def test_bias_index_equals_timm_buffer(l1):
    fixture, model = l1
    ours = model.get_layer("stage3_block4").token_mixer.bias_index
    np.testing.assert_array_equal(ours, fixture.int_buffers["stages.3.blocks.4.token_mixer.attention_bias_idxs"])
