"""The latency model for EfficientFormerV2: its units, the walk along V2's plan, sums and family checks."""

import numpy as np
import pytest

from android_ios_bench import lut as L
from android_ios_bench.correction import family_sums
from android_ios_bench.predictor import architecture_units, predict
from android_ios_bench.reference import reference_configs
from android_ios_bench.units import V2SearchSpace, build_unit, search_space_units
from deploy.testing import randomize_weights
from ef_keras.models.efficientformer_v2.config import V2_VARIANTS, EfficientFormerV2Config
from ef_keras.models.efficientformer_v2.model import EfficientFormerV2

SPACE = V2SearchSpace(input_size=64, widths=((16, 32), (16, 32), (32, 48), (32, 48)), mlp_ratios=(3, 4))
TINY = EfficientFormerV2Config(widths=(16, 16, 32, 48), depths=(1, 1, 2, 2), num_vit=1,
                               mlp_ratios=((4,), (3,), (4, 3), (3, 4)), name="tiny")


def cost(kind, u):
    """A synthetic latency, linear in width, distinct per kind."""
    base = {"v2_stem": 0.5, "v2_downsample": 0.2, "v2_attn_downsample": 0.7, "v2_ffn": 0.1, "v2_attn_ffn": 1.0,
            "v2_head": 0.3}[kind]
    return base + 0.001 * u["cin"] * u["cout"] + 0.01 * u.get("mlp_ratio", 0)


def make_lut(space=SPACE):
    doc = L.new_lut(device={"name": "synthetic"}, runtime={"name": "litert", "threads": 2, "precision": "fp32"},
                    measurement={"tool": "test", "date": L.now_iso(), "runs": 50}, search_space=space.to_dict())
    for u in search_space_units(space):
        doc["entries"][u.key] = L.make_entry(u.kind, u.unit, {"median_ms": cost(u.kind, u.unit), "runs": 50})
    return doc


def test_default_space_measures_every_unit_of_the_four_variants():
    keys = {u.key for u in search_space_units(V2SearchSpace())}
    for name, config in V2_VARIANTS.items():
        missing = [L.unit_key(k, **f) for k, f in architecture_units(config, V2SearchSpace().to_dict())
                   if L.unit_key(k, **f) not in keys]
        assert not missing, f"{name}: {missing[:3]}"
    names = [n for n, _ in reference_configs(V2SearchSpace().to_dict())]
    assert names[:4] == ["s0", "s1", "s2", "l"] and len(set(names)) == len(names) >= 20


def test_unit_walk_reproduces_the_full_v2_model_numerically():
    """Chaining the LUT's unit models (with the model's weights) gives EfficientFormerV2's output."""
    model = EfficientFormerV2(TINY, input_shape=(64, 64, 3))
    randomize_weights(model)
    rng = np.random.default_rng(0)
    blocks = TINY.blocks((64, 64))
    units = [L.unit_key(k, **f) for k, f in architecture_units(TINY, SPACE.to_dict())]
    assert len(units) == len(blocks) == 11
    by_key = {u.key: u for u in search_space_units(SPACE)}
    x = rng.normal(size=(1, 64, 64, 3)).astype("float32")
    y = x
    for key, block in zip(units, blocks):
        unit_model = build_unit(by_key[key])
        if block.kind == "v2_head":
            for layer in ("norm", "head", "head_dist"):
                unit_model.get_layer(layer).set_weights(model.get_layer(layer).get_weights())
        else:
            unit_model.layers[1].set_weights(model.get_layer(block.name).get_weights())
        y = unit_model(y)
    np.testing.assert_allclose(np.asarray(y), np.asarray(model(x)), atol=1e-4, rtol=1e-4)


def test_predict_sums_the_v2_units():
    p = predict(TINY, make_lut(), input_size=64)
    # TINY at 64 px, written out: stem 3->16, FFN 16 (r4), down 16->16, FFN 16 (r3), down 16->32,
    # FFN 32 (r4), strided attention 32 (r3), attention down 32->48, FFN 48 (r3), attention 48 (r4), head.
    units = [("v2_stem", 3, 16, 0), ("v2_ffn", 16, 16, 4), ("v2_downsample", 16, 16, 0), ("v2_ffn", 16, 16, 3),
             ("v2_downsample", 16, 32, 0), ("v2_ffn", 32, 32, 4), ("v2_attn_ffn", 32, 32, 3),
             ("v2_attn_downsample", 32, 48, 0), ("v2_ffn", 48, 48, 3), ("v2_attn_ffn", 48, 48, 4),
             ("v2_head", 48, 1000, 0)]
    expected = sum(cost(k, {"cin": a, "cout": b, "mlp_ratio": r}) for k, a, b, r in units)
    assert p.ms == pytest.approx(expected) and not p.interpolated
    fam = family_sums(p.by_kind())
    assert fam["meta3d"] == pytest.approx(sum(u.ms_total for u in p.per_unit if u.kind == "v2_attn_ffn"))


def test_widths_between_measured_ones_interpolate():
    """Widths 24 and 40 lie halfway between measured ones (16|32, 32|48): what each unit costs, by hand.

    Per-width units interpolate linearly, so a blocks' cost (quadratic in width in `cost`) comes out as the
    mean of its two measured neighbours; downsamplings interpolate bilinearly over the (Cin, Cout) grid,
    which reproduces `cost`'s Cin·Cout exactly, as a linear interpolation does the stem's and head's.
    """
    config = EfficientFormerV2Config(widths=(24, 24, 40, 40), depths=(1, 1, 1, 1), num_vit=1,
                                     mlp_ratios=((4,), (4,), (4,), (4,)))
    p = predict(config, make_lut(), input_size=64)

    def halfway(kind, low, high):
        return (cost(kind, {"cin": low, "cout": low, "mlp_ratio": 4}) + cost(kind, {"cin": high, "cout": high,
                                                                                   "mlp_ratio": 4})) / 2

    expected = (cost("v2_stem", {"cin": 3, "cout": 24}) + halfway("v2_ffn", 16, 32)
                + cost("v2_downsample", {"cin": 24, "cout": 24}) + halfway("v2_ffn", 16, 32)
                + cost("v2_downsample", {"cin": 24, "cout": 40}) + halfway("v2_attn_ffn", 32, 48)
                + cost("v2_attn_downsample", {"cin": 40, "cout": 40}) + halfway("v2_attn_ffn", 32, 48)
                + cost("v2_head", {"cin": 40, "cout": 1000}))
    assert p.ms == pytest.approx(expected) and any("bilinear" in n for n in p.interpolated)


def test_family_mismatch_is_one_line():
    with pytest.raises(L.LUTCoverageError, match="EfficientFormerV2 but the LUT measured V1 units"):
        predict(TINY, L.load_default_lut(), input_size=224)
    with pytest.raises(L.LUTCoverageError, match=r"EfficientFormer \(V1\) but the LUT measured EfficientFormerV2"):
        predict("l1", make_lut(), input_size=64)


def test_embedded_v2_lut_covers_the_four_variants_exactly():
    """lut=None picks the shipped V2 table for V2 architectures; S0-L are measured, not interpolated."""
    for name in ("s0", "s1", "s2", "l"):
        p = predict(name, exact=True)
        assert not p.interpolated and p.ms > 0 and p.correction_ms != 0
    assert predict("efficientformerv2_s0").sum_ms < predict("l").sum_ms
