"""EfficientFormerV2 configs, block plan and constructor arguments.

The variant table is checked against timm's tables as the fixture generator recorded them
(key counts) and against the V2 facts (widths, depths, vit_num, expansion ratios).
"""

import numpy as np
import pytest

import ef_keras
from ef_keras.models.config import ConfigError
from ef_keras.models.efficientformer_v2.config import V2_VARIANTS, EfficientFormerV2Config
from ef_keras.models.base import ModelArgumentError
from ef_keras.models.efficientformer_v2.model import EfficientFormerV2


def test_variant_table_is_the_published_one():
    s0 = V2_VARIANTS["s0"]
    assert s0.widths == (32, 48, 96, 176) and s0.depths == (2, 2, 6, 4) and s0.num_vit == 2
    assert s0.mlp_ratios == ((4, 4), (4, 4), (4, 3, 3, 3, 4, 4), (4, 3, 3, 4))
    assert [V2_VARIANTS[v].num_vit for v in ("s1", "s2", "l")] == [2, 4, 6]
    assert V2_VARIANTS["l"].widths == (40, 80, 192, 384) and V2_VARIANTS["l"].depths == (5, 5, 15, 10)


def test_s0_block_plan():
    blocks = V2_VARIANTS["s0"].blocks((224, 224))
    kinds = [b.kind for b in blocks]
    assert kinds.count("v2_ffn") == 10 and kinds.count("v2_attn_ffn") == 4
    assert kinds.count("v2_downsample") == 2 and kinds.count("v2_attn_downsample") == 1
    attn = [b for b in blocks if b.kind == "v2_attn_ffn"]
    assert [(b.stage, b.index, b.attn_stride, b.attn_grid) for b in attn] == [
        (2, 4, 2, (7, 7)), (2, 5, 2, (7, 7)), (3, 2, None, (7, 7)), (3, 3, None, (7, 7))]
    down = next(b for b in blocks if b.kind == "v2_attn_downsample")
    assert (down.grid, down.out_grid, down.name, down.reference_prefix) == (
        (14, 14), (7, 7), "downsample3", "stages.3.downsample")


@pytest.mark.parametrize("bad, message", [
    (dict(mlp_ratios=(4, 4, (4, 3), (4, 3, 3, 4))), r"mlp_ratios\[2\] has 2 ratio\(s\) but stage 2 has depth 6"),
    (dict(num_vit=5), "num_vit=5 must be between 0 and the depths of stages 3 and 4"),
    (dict(widths=(32, 48, 96, 170)), r"widths\[3\]=170"),
    (dict(mlp_ratios=(4, 4, (4, 3, 3, 3, 4, -1), (4, 3, 3, 4))), "must be positive numbers"),
])
def test_bad_config_says_what_to_change(bad, message):
    data = {**V2_VARIANTS["s0"].to_dict(), **bad}
    with pytest.raises(ConfigError, match=message):
        EfficientFormerV2Config.from_dict(data)


def test_v1_config_json_is_refused():
    with pytest.raises(ConfigError, match="not EfficientFormerV2"):
        EfficientFormerV2Config.from_dict(ef_keras.VARIANTS["l1"].to_dict())


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_shape=(None, None, 3)), "fixed input size"),
    (dict(input_shape=(200, 224, 3)), "multiples of 32"),
    (dict(weights="imagenet", classes=10), "1000-class heads"),
    (dict(include_top=True, pooling="avg"), "pooling applies only with include_top=False"),
])
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ModelArgumentError, match=message):
        EfficientFormerV2("s0", **kwargs)


def test_backbone_outputs():
    """(The .keras round trip of every variant is in the registry battery, tests/test_registry.py.)"""
    model = ef_keras.EfficientFormerV2S0(include_top=False, input_shape=(64, 64, 3))
    x = np.random.default_rng(0).standard_normal((1, 64, 64, 3)).astype("float32")
    assert model.predict(x, verbose=0).shape == (1, 2, 2, 176)
    pooled = ef_keras.EfficientFormerV2S0(include_top=False, input_shape=(64, 64, 3), pooling="avg")
    assert pooled.predict(x, verbose=0).shape == (1, 176)


def test_features_only_needs_a_backbone():
    with pytest.raises(ModelArgumentError, match="features_only=True returns the feature pyramid"):
        EfficientFormerV2("s0", features_only=True)
    with pytest.raises(ModelArgumentError, match="pyramid_outputs belong to a backbone"):
        EfficientFormerV2("s0", input_shape=(64, 64, 3)).pyramid_outputs


def test_v1_constructor_given_a_v2_name_points_to_v2():
    with pytest.raises(ConfigError, match=r"'s2' is an EfficientFormerV2 variant; build it with "
                                          r"ef_keras.EfficientFormerV2\('s2'\)"):
        ef_keras.EfficientFormer("s2")
