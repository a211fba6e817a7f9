"""android_ios_bench.predictor.predict: the unit walk matches the real model, sums, interpolation, coverage errors."""

import copy

import numpy as np
import pytest

from android_ios_bench import lut as L
from android_ios_bench import predictor as P
from android_ios_bench.correction import CorrectionError, fit_correction
from android_ios_bench.refit import refit_correction
from android_ios_bench.predictor import Layout, drift_scale, layout_units, predict
from android_ios_bench.reference import apply_action
from android_ios_bench.units import SearchSpace, Unit, build_unit, search_space_units
from deploy.testing import randomize_weights
from ef_keras import EfficientFormer, EfficientFormerConfig

SPACE = SearchSpace(input_size=64, min_widths=(16, 16, 16, 16), max_widths=(32, 32, 48, 64), named=(),
                    meta3d_stages=(2, 3))
CONFIG = EfficientFormerConfig(widths=(16, 32, 48, 64), depths=(1, 2, 1, 2), num_vit=1, name="tiny")


def cost(kind, u):
    """A synthetic latency that is exactly linear in width (bilinear in Cin, Cout for downsampling)."""
    return {"stem": 0.5 + 0.01 * u["cout"], "downsample": 0.001 * u["cin"] * u["cout"] + 0.2,
            "meta4d": 0.1 + 0.02 * u["cin"] * u["res"], "flat": 0.003 * u["cin"],
            "meta3d": 1.0 + 0.05 * u["cin"] * u["res"], "head": 0.3 + 0.004 * u["cin"]}[kind]


def make_lut(space=SPACE, drop=()):
    doc = L.new_lut(device={"name": "synthetic"}, runtime={"name": "litert", "threads": 2, "precision": "fp32"},
                    measurement={"tool": "test", "date": L.now_iso(), "runs": 50}, search_space=space.to_dict())
    for u in search_space_units(space):
        if u.key not in drop:
            doc["entries"][u.key] = L.make_entry(u.kind, u.unit, {"median_ms": cost(u.kind, u.unit), "runs": 50})
    return doc


def test_unit_walk_reproduces_the_full_model_numerically():
    """Chaining the LUT's unit models (with the model's weights) gives EfficientFormer's output."""
    model = EfficientFormer(CONFIG, input_shape=(64, 64, 3))
    # the model's layers in execution order, grouped the way the LUT units are
    names = ["stem", "stage0_block0", "downsample1", "stage1_block0", "stage1_block1", "downsample2",
             "stage2_block0", "downsample3", "stage3_block0", "flat", "stage3_block2"]
    units = layout_units(CONFIG.layout, SPACE.to_dict())
    assert [k for k, _ in units] == ["stem", "meta4d", "downsample", "meta4d", "meta4d", "downsample", "meta4d",
                                     "downsample", "meta4d", "flat", "meta3d", "head"]
    randomize_weights(model)  # non-trivial BN statistics, layer scales and biases
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    y = x
    for (kind, fields), name in zip(units, names + ["head"]):
        unit_model = build_unit(Unit.make(kind, **fields))
        if kind == "head":
            for layer in ("norm", "head", "head_dist"):
                unit_model.get_layer(layer).set_weights(model.get_layer(layer).get_weights())
        elif kind != "flat":
            unit_model.layers[1].set_weights(model.get_layer(name).get_weights())
        y = unit_model(y)
    np.testing.assert_allclose(np.asarray(y), np.asarray(model(x)), atol=1e-4, rtol=1e-4)


#: CONFIG's units at 64 px (stage grids 16/8/4/2) as (kind, cin, cout, res), written out from the
#: architecture: stem, per stage its downsampling and blocks, the Flat before the one 3D block, the head.
CONFIG_UNITS = [("stem", 3, 16, 64), ("meta4d", 16, 16, 16), ("downsample", 16, 32, 16), ("meta4d", 32, 32, 8),
                ("meta4d", 32, 32, 8), ("downsample", 32, 48, 8), ("meta4d", 48, 48, 4), ("downsample", 48, 64, 4),
                ("meta4d", 64, 64, 2), ("flat", 64, 64, 2), ("meta3d", 64, 64, 2), ("head", 64, 1000, 2)]


def total_cost(units):
    return sum(cost(kind, {"cin": cin, "cout": cout, "res": res}) for kind, cin, cout, res in units)


def test_predict_sums_every_unit_with_its_count():
    doc = make_lut()
    p = predict(CONFIG, doc, input_size=64)
    expected = total_cost(CONFIG_UNITS)
    assert p.ms == pytest.approx(expected) and p.sum_ms == p.ms and p.correction_ms == 0
    assert not p.interpolated and not any(u.interpolated for u in p.per_unit)
    assert sum(u.count for u in p.per_unit) == 12
    assert p.by_kind()["meta4d"] == pytest.approx(sum(u.ms_total for u in p.per_unit if u.kind == "meta4d"))


def test_missing_widths_are_interpolated_and_reported():
    config = EfficientFormerConfig(widths=(24, 32, 40, 56), depths=(1, 1, 1, 1), num_vit=1)
    full = predict(config, make_lut(), input_size=64)  # 24/40/56 are not multiples of 16: interpolated
    kinds = {note.split()[0] for note in full.interpolated}
    assert kinds == {"stem", "meta4d", "downsample", "meta3d", "flat", "head"}
    units = [("stem", 3, 24, 64), ("meta4d", 24, 24, 16), ("downsample", 24, 32, 16), ("meta4d", 32, 32, 8),
             ("downsample", 32, 40, 8), ("meta4d", 40, 40, 4), ("downsample", 40, 56, 4), ("flat", 56, 56, 2),
             ("meta3d", 56, 56, 2), ("head", 56, 1000, 2)]
    exact = total_cost(units)
    assert full.ms == pytest.approx(exact)  # the synthetic costs are linear/bilinear, so interpolation is exact
    assert any("bilinear on grid" in n for n in full.interpolated)


def test_dropping_a_measured_width_falls_back_to_interpolation():
    config = EfficientFormerConfig(widths=(16, 32, 48, 32), depths=(1, 2, 1, 2), num_vit=1)
    key = L.unit_key("meta4d", cin=32, res=2, mlp_ratio=4, pool_size=3)
    p, full = predict(config, make_lut(drop=[key]), input_size=64), predict(config, make_lut(), input_size=64)
    assert p.ms == pytest.approx(full.ms)
    assert set(p.interpolated) - set(full.interpolated) == {"meta4d c=32 r=2: linear between c=16 and c=48"}


def _references(doc, truth, n=10, seed=0):
    """Reference models whose 'measured' latency is a known function `truth` of their per-kind sums."""
    from ef_keras.models.efficientformer.config import EfficientFormerConfig

    rng = np.random.default_rng(seed)
    refs = []
    for i in range(n):
        cfg = EfficientFormerConfig(widths=tuple(int(rng.integers(1, m // 16 + 1)) * 16 for m in SPACE.max_widths),
                                    depths=tuple(int(rng.integers(1, 4)) for _ in range(4)), num_vit=int(rng.integers(0, 2)))
        by_kind = predict(cfg, doc, input_size=64, correction=False).by_kind()
        refs.append({"name": f"ref{i}", "config": cfg.to_dict(), "median_ms": truth(by_kind)})
    return refs


def test_correction_fit_recovers_a_global_scale_and_constant():
    doc = make_lut()
    doc["reference_models"] = _references(doc, lambda k: 1.3 * sum(k.values()) + 0.5)
    fit = refit_correction(doc)
    assert fit["form"] in ("global", "per_family") and fit["loo_max_abs_pct"] < 1e-6
    assert fit["delta_validated"] is False and {c["form"] for c in doc["correction_candidates"]} == {
        "scale", "global", "per_family"}
    L.validate_lut(doc)
    p = predict(CONFIG, doc, input_size=64)
    assert p.ms == pytest.approx(1.3 * p.sum_ms + 0.5) and p.correction_ms == pytest.approx(p.ms - p.sum_ms)
    assert predict(CONFIG, doc, input_size=64, correction=False).ms == pytest.approx(p.sum_ms)
    with pytest.raises(L.LUTError, match="no p10_ms"):
        predict(CONFIG, doc, input_size=64, statistic="p10_ms")  # this synthetic LUT has medians only


def test_correction_picks_per_family_scales_when_the_sum_is_biased_by_kind():
    doc = make_lut()
    truth = lambda k: 2.0 * k.get("meta3d", 0.0) + sum(v for n, v in k.items() if n != "meta3d") + 0.1  # noqa: E731
    doc["reference_models"] = _references(doc, truth, n=12)
    fit = refit_correction(doc)
    assert fit["form"] == "per_family" and fit["loo_mean_abs_pct"] < 1e-6
    np.testing.assert_allclose(fit["coefficients"], [1.0, 2.0, 1.0, 0.1], atol=1e-4)
    few = make_lut()
    few["reference_models"] = doc["reference_models"][:1]  # too few models for any form: no correction
    assert refit_correction(few) is None and "correction" not in few


def test_a_correction_with_fewer_models_than_parameters_is_refused():
    doc = make_lut()
    refs = _references(doc, lambda k: sum(k.values()), n=4)
    kinds = [predict(r["config"], doc, input_size=64, correction=False).by_kind() for r in refs]
    with pytest.raises(CorrectionError, match="the per_family correction has 4 parameter\\(s\\) but only 4 reference "
                                              "model\\(s\\) were given; time at least 5"):
        fit_correction(kinds, [r["median_ms"] for r in refs], "per_family")
    doc["reference_models"] = refs
    doc["correction"] = {"form": "per_family", "statistic": "median_ms", "coefficients": [1, 1, 1, 0],
                         "fitted_on": [r["name"] for r in refs]}
    with pytest.raises(L.LUTSchemaError, match="its per_family correction has 4 parameters but was fitted on 4 "
                                               "models; a fit needs more models than parameters"):
        L.validate_lut(doc)


def test_the_correction_choice_uses_measured_deltas():
    """Whole models that only a per-family correction fits exactly, but Δs that follow the plain sum: the
    per-family form distorts the Δs, so the Δ-validated choice is another form (and says so)."""
    doc = make_lut()
    truth = lambda k: 1.6 * k.get("meta4d", 0.0) + 0.5 * k.get("meta3d", 0.0) + sum(  # noqa: E731
        v for n, v in k.items() if n not in ("meta4d", "meta3d")) + 0.05
    doc["reference_models"] = _references(doc, truth, n=14)
    assert refit_correction(doc)["form"] == "per_family"  # whole models alone: per-family is exact
    pairs = []
    for r in doc["reference_models"][:6]:
        base = EfficientFormerConfig.from_dict(r["config"])
        for action, stage in (("depth", 0), ("mb3d", None), ("width", 3)):
            derived = apply_action(base, action, stage, (16, 16, 16, 16), 16, "d")
            if derived is None:
                continue
            b, d = (predict(c, doc, input_size=64, correction=False).sum_ms for c in (base, derived))
            pairs.append({"base": r["name"], "derived": f"{r['name']}-{action}", "action": action, "stage": stage,
                          "base_config": base.to_dict(), "derived_config": derived.to_dict(), "base_ms": r["median_ms"],
                          "delta_ms": r["median_ms"] * (b - d) / b, "ci95_ms": [0.0, 1.0], "outside_noise": True})
    doc["delta_validation"] = {"session": "x", "pairs": pairs}
    fit = refit_correction(doc)
    by_form = {c["form"]: c for c in doc["correction_candidates"]}
    assert by_form["scale"]["delta_mean_abs_pct"] < 1e-6  # one scale keeps every relative saving
    assert by_form["per_family"]["delta_mean_abs_pct"] > 2.0 + by_form["scale"]["delta_mean_abs_pct"]
    assert fit["form"] != "per_family" and fit["delta_validated"] and fit["delta_pairs"] == len(pairs)
    L.validate_lut(doc)


def test_the_smallest_trusted_saving_is_the_largest_predicted_saving_that_was_not_real():
    """Savings the Δ validation measured as no saving (interval reaching 0) set the bar; real ones never do."""
    doc = make_lut()
    assert P.smallest_trusted_saving(doc) == 0.0  # no Δ validation: every predicted saving is taken
    base = CONFIG
    narrow4 = EfficientFormerConfig(widths=(16, 32, 48, 48), depths=(1, 2, 1, 2), num_vit=1, name="w4")
    narrow2 = EfficientFormerConfig(widths=(16, 16, 48, 64), depths=(1, 2, 1, 2), num_vit=1, name="w2")
    shallow = EfficientFormerConfig(widths=(16, 32, 48, 64), depths=(1, 1, 1, 2), num_vit=1, name="d2")
    ms = {c.name: predict(c, doc, input_size=64).ms for c in (base, narrow4, narrow2, shallow)}
    pair = lambda derived, ci: {"base_config": base.to_dict(), "derived_config": derived.to_dict(),  # noqa: E731
                                "ci95_ms": ci}
    doc["delta_validation"] = {"pairs": [pair(shallow, [0.2, 0.4])]}
    assert P.smallest_trusted_saving(doc) == 0.0  # a measured saving sets no bar
    doc["delta_validation"] = {"pairs": [pair(shallow, [0.2, 0.4]), pair(narrow4, [-0.3, 0.1]),
                                         pair(narrow2, [-0.01, 0.02])]}
    fractions = {n: (ms["tiny"] - ms[n]) / ms["tiny"] for n in ("w4", "w2")}
    assert fractions["w4"] != fractions["w2"] and min(fractions.values()) > 0
    assert P.smallest_trusted_saving(doc) == pytest.approx(max(fractions.values()))


def test_drift_scale_is_the_median_ratio_of_reference_models():
    doc = {"reference_models": [{"name": "l1", "config": {}, "median_ms": 10.0}, {"name": "s", "config": {},
                                                                                "median_ms": 2.0}]}
    scale, ratios = drift_scale(doc, {"l1": 15.0, "s": 3.2})
    assert ratios == {"l1": 1.5, "s": 1.6} and scale == pytest.approx(1.55)
    with pytest.raises(L.LUTError, match="no reference models"):
        drift_scale({"reference_models": []}, {"l1": 1.0})


def test_supernet_layouts_pay_a_reshape_per_layout_switch():
    layout = Layout((16, 32, 48, 64), (("4d",), ("4d",), ("4d", "3d", "4d", "3d"), ("3d",)))
    kinds = [k for k, _ in layout_units(layout, SPACE.to_dict())]
    # stage 3: 4d, flat, 3d, flat, 4d, flat, 3d, then flat back before the downsampling; stage 4: flat, 3d
    assert kinds.count("flat") == 5 and kinds.count("meta3d") == 3
    assert predict(layout, make_lut(), input_size=64).ms > 0
    with pytest.raises(L.LUTCoverageError, match="stage 1 has 3D MetaBlocks"):
        predict(Layout((16, 32, 48, 64), (("3d",), (), (), ())), make_lut(), input_size=64)


def test_bad_requests_give_one_line_errors():
    doc = make_lut()
    with pytest.raises(L.LUTCoverageError, match="stem width 48 at resolution 64 is outside the LUT's measured "
                                                 "widths 16..32"):
        predict(EfficientFormerConfig(widths=(48, 32, 48, 64), depths=(1, 1, 1, 1), num_vit=0), doc, input_size=64)
    with pytest.raises(L.LUTCoverageError, match="downsample output width 80 at resolution 4 is outside the LUT's "
                                                 "grid 16..64"):  # (16, 16, 16, 16)..(32, 32, 48, 64)
        predict(EfficientFormerConfig(widths=(16, 32, 48, 80), depths=(1, 1, 1, 1), num_vit=0), doc, input_size=64)
    with pytest.raises(L.LUTCoverageError, match="64x64 inputs, not 224x224"):
        predict(CONFIG, doc)
    with pytest.raises(L.LUTCoverageError, match="mlp_ratio=3"):
        predict(EfficientFormerConfig(widths=(16, 32, 48, 64), depths=(1, 1, 1, 1), num_vit=0, mlp_ratio=3), doc,
                input_size=64)
    broken = copy.deepcopy(doc)
    broken["entries"].pop(next(iter(broken["entries"])))
    broken["runtime"]["precision"] = "double"
    with pytest.raises(L.LUTSchemaError, match="runtime/precision"):
        predict(CONFIG, broken, input_size=64)


def test_lut_paths_are_loaded_and_validated(tmp_path):
    path = tmp_path / "lut.json"
    L.save_lut(make_lut(), path)
    assert predict(CONFIG, str(path), input_size=64).ms == pytest.approx(predict(CONFIG, make_lut(), input_size=64).ms)
    with pytest.raises(L.LUTError, match="LUT file not found"):
        predict(CONFIG, str(tmp_path / "nope.json"), input_size=64)


def test_embedded_default_lut_predicts_the_named_models_exactly_and_covers_the_search_grid():
    from android_ios_bench.units import DEFAULT_SPACE

    doc = L.load_default_lut()
    assert doc["runtime"]["name"] == "litert" and doc["search_space"]["input_size"] == 224
    P.check_search_space(doc, input_size=224, min_widths=DEFAULT_SPACE.min_widths,
                         max_widths=DEFAULT_SPACE.max_widths, width_step=16, method="in_rotation")
    l1, l3, l7 = (predict(name, exact=True) for name in ("l1", "l3", "l7"))
    assert 0 < l1.ms < l3.ms < l7.ms
    assert all(u.ms_each > 0 for u in l7.per_unit)
    assert doc["correction"]["delta_validated"] and len(doc["reference_models"]) >= 30



def test_low_percentile_statistic_is_summed_when_asked():
    doc = make_lut()
    for entry in doc["entries"].values():
        entry["p10_ms"] = entry["median_ms"] / 2
    median, p10 = predict(CONFIG, doc, input_size=64), predict(CONFIG, doc, input_size=64, statistic="p10_ms")
    assert p10.ms == pytest.approx(median.ms / 2)
    with pytest.raises(L.LUTError, match="has no min_ms"):
        predict(CONFIG, doc, input_size=64, statistic="min_ms")
