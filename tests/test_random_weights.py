"""Tests for tests/fixtures/random_weights.py and the committed parity fixtures (NumPy only, no torch)."""

import json
import os

import numpy as np
import pytest

from fixtures import random_weights as rw

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
VARIANTS = ("l1", "l3", "l7")

SMALL = [
    ("stem.conv1.weight", (4, 3, 3, 3)),
    ("stem.norm1.weight", (4,)),
    ("stem.norm1.bias", (4,)),
    ("stem.norm1.running_mean", (4,)),
    ("stem.norm1.running_var", (4,)),
    ("stem.norm1.num_batches_tracked", ()),
    ("stages.0.blocks.0.ls1.gamma", (4,)),
    ("stages.3.blocks.0.token_mixer.attention_biases", (8, 49)),
    ("stages.3.blocks.0.token_mixer.attention_bias_idxs", (49, 49)),
    ("head.weight", (10, 4)),
]
SMALL_INTS = {"stem.norm1.num_batches_tracked": np.array(0),
              "stages.3.blocks.0.token_mixer.attention_bias_idxs": np.zeros((49, 49), np.int64)}


@pytest.fixture(scope="module", params=VARIANTS)
def fixture(request):
    return rw.load_parity_fixture(os.path.join(FIXTURES, f"parity_{request.param}.npz"))


def test_deterministic_and_seed_dependent():
    a = rw.random_state_dict(SMALL, 3, SMALL_INTS)
    b = rw.random_state_dict(SMALL, 3, SMALL_INTS)
    c = rw.random_state_dict(SMALL, 4, SMALL_INTS)
    assert list(a) == [k for k, _ in SMALL]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["stem.conv1.weight"], c["stem.conv1.weight"])


def test_values_far_from_init():
    sd = rw.random_state_dict(SMALL, 0, SMALL_INTS)
    ls = np.abs(sd["stages.0.blocks.0.ls1.gamma"])
    assert ls.min() >= 0.1 and ls.max() <= 0.5
    assert sd["stem.norm1.running_var"].min() >= 0.5
    assert np.abs(sd["stem.norm1.weight"]).min() >= 0.5
    assert sd["stages.3.blocks.0.token_mixer.attention_biases"].std() > 0.5
    assert sd["stem.conv1.weight"].dtype == np.float32
    assert sd["stem.norm1.num_batches_tracked"].dtype == np.int64


def test_integer_buffers_come_from_int_buffers():
    with pytest.raises(ValueError, match="attention_bias_idxs"):
        rw.random_state_dict(SMALL, 0, {"stem.norm1.num_batches_tracked": np.array(0)})
    bad = dict(SMALL_INTS, **{"stem.norm1.num_batches_tracked": np.zeros(2, np.int64)})
    with pytest.raises(ValueError, match="shape"):
        rw.random_state_dict(SMALL, 0, bad)


def test_unknown_key_is_an_error():
    with pytest.raises(ValueError, match="unknown kind"):
        rw.random_state_dict([("stem.conv1.something", (3,))], 0)


def test_shape_encoding_round_trips():
    shapes = [(2, 3, 4, 5), (7,), (), (8, 49)]
    assert rw.decode_shapes(rw.encode_shapes(shapes)) == shapes


def test_parity_inputs():
    x = rw.parity_inputs(5)
    assert x.shape == (4, 3, 224, 224) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:3], np.random.default_rng(5).standard_normal((3, 3, 224, 224)).astype(np.float32))
    # The image-like input is an ImageNet-normalised image in [0, 1].
    mean = np.array(rw.IMAGENET_MEAN).reshape(3, 1, 1)
    std = np.array(rw.IMAGENET_STD).reshape(3, 1, 1)
    img = x[3] * std + mean
    assert img.min() > -1e-5 and img.max() < 1 + 1e-5
    np.testing.assert_array_equal(rw.parity_inputs(5), x)


def test_fixture_files_small():
    for v in VARIANTS:
        assert os.path.getsize(os.path.join(FIXTURES, f"parity_{v}.npz")) < 1 << 20


def test_fixture_structure(fixture):
    n = len(fixture.keys)
    assert len(fixture.official_keys) == len(fixture.shapes) == n == fixture.checksums.shape[0]
    if fixture.variant == "l1":
        assert n == 281
    assert fixture.timm_name == f"efficientformer_{fixture.variant}"
    for name in ("logits", "head_logits", "dist_logits"):
        arr = getattr(fixture, name)
        assert arr.shape == (4, 1000) and arr.dtype == np.float32 and np.all(np.isfinite(arr))
    np.testing.assert_allclose(fixture.logits, (fixture.head_logits + fixture.dist_logits) / 2, atol=1e-6)
    assert 1.0 < fixture.logits.std() < 10.0


def test_fixture_param_count_matches_timm(fixture):
    """Float entries other than BN running statistics are timm's parameters."""
    params = sum(int(np.prod(s)) for k, s in zip(fixture.keys, fixture.shapes)
                 if k not in fixture.int_buffers and not k.endswith(("running_mean", "running_var")))
    with open(os.path.join(FIXTURES, "parity_fixtures.json")) as f:  # counted by timm when the fixture was made
        assert params == json.load(f)["variants"][fixture.variant]["params_all"]


def test_fixture_int_buffers_are_the_true_ones(fixture):
    r, c = np.divmod(np.arange(49), 7)
    idx = np.abs(r[:, None] - r[None, :]) * 7 + np.abs(c[:, None] - c[None, :])
    bias_idx = [k for k in fixture.int_buffers if k.endswith("attention_bias_idxs")]
    assert len(bias_idx) == {"l1": 1, "l3": 4, "l7": 8}[fixture.variant]
    for k in bias_idx:
        np.testing.assert_array_equal(fixture.int_buffers[k], idx)
    for k, v in fixture.int_buffers.items():
        if k.endswith("num_batches_tracked"):
            assert v.shape == () and v == 0


def test_fixture_official_layout(fixture):
    official = fixture.official_keys
    assert len(set(official)) == len(official)
    for k in official:
        assert k.split(".")[0] in ("patch_embed", "network", "norm", "head", "dist_head"), k
        assert ".ls1." not in k and ".ls2." not in k and "stages" not in k
    assert "patch_embed.4.running_var" in official and "dist_head.weight" in official
    assert sum(k.endswith("layer_scale_1") for k in official) == sum(k.endswith("ls1.gamma") for k in fixture.keys)


def test_regenerated_weights_match_fixture_checksums(fixture):
    """Same weights as when the fixture was made; fails (with this message) if NumPy's streams changed."""
    timm_sd = fixture.state_dict()
    np.testing.assert_allclose(rw.checksums(timm_sd), fixture.checksums, rtol=1e-9, atol=1e-9,
                               err_msg="regenerated weights differ from the fixture's (NumPy random stream?)")
    official_sd = fixture.state_dict("official")
    assert list(official_sd) == list(fixture.official_keys)
    for k, o in zip(fixture.keys[:40], fixture.official_keys[:40]):
        np.testing.assert_array_equal(timm_sd[k], official_sd[o])


def test_fixture_json_records_versions():
    with open(os.path.join(FIXTURES, "parity_fixtures.json")) as f:
        record = json.load(f)
    assert record["timm_version"] and record["torch_version"]
    for v in VARIANTS:  # each variant's record carries timm's own count
        assert record["variants"][v]["params_all"] > 0 and record["variants"][v]["num_keys"] > 0
