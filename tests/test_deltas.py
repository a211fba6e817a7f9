"""Δ-latency validation: the statistics on fixtures of raw timings (worked out by hand), the session check,
and the protocol on real LiteRT models (resumable)."""

import json
import math
import os

import pytest

from android_ios_bench import lut as L
from android_ios_bench.deltas import (attach, check_session, delta_stats, kept_rounds, measure_pairs, median_ci,
                                      new_delta_doc)
from android_ios_bench.reference import ActionPair
from android_ios_bench.units import SearchSpace
from ef_keras.models.efficientformer.config import EfficientFormerConfig

#: 10 rounds. The control's sorted times are 9.0 9.5 10 10 10 10 10 10.4 20 30, so its 10th percentile is
#: 9.0 + 0.9 x (9.5 - 9.0) = 9.45 (numpy's linear rule, position 0.9) and a round is contended above
#: 1.1 x 9.45 = 10.395 ms: rounds 6 (10.4), 8 (20) and 9 (30) are dropped, 7 rounds are kept. (The median, 10,
#: would keep round 6.) The derived model took 9 ms in the kept rounds, the base 9.8 .. 10.3 ms.
CONTROL = [10.0, 10.0, 9.0, 10.0, 9.5, 10.0, 10.4, 10.0, 20.0, 30.0]
BASE = [10.0, 10.2, 9.8, 10.1, 9.9, 10.3, 9.7, 10.0, 50.0, 50.0]
DERIVED = [9.0] * 8 + [5.0, 5.0]


def test_delta_statistics_of_a_fixture_worked_out_by_hand():
    """Kept differences, sorted: 0.8 0.9 1.0 1.0 1.1 1.2 1.3 -> median 1.0. n = 7: n/2 -/+ 1.96 sqrt(7)/2
    = 3.5 -/+ 2.593, so j = floor(0.907) = 0, clipped to 1, and k = ceil(6.093) = 7: CI [d(1), d(7)] = [0.8, 1.3],
    half-width 0.25 = 25 % of 1.0 (> 20 %: not precise), 0 outside it. Base median over the kept rounds: 10.0."""
    assert kept_rounds(CONTROL).tolist() == [True] * 6 + [False, True, False, False]
    stats = delta_stats(BASE, DERIVED, CONTROL)
    assert stats["rounds"] == 10 and stats["kept_rounds"] == 7
    assert stats["delta_ms"] == pytest.approx(1.0) and stats["ci95_ms"] == pytest.approx([0.8, 1.3])
    assert stats["base_ms"] == pytest.approx(10.0) and stats["derived_ms"] == pytest.approx(9.0)
    assert stats["half_width_pct"] == pytest.approx(25.0)
    assert stats["outside_noise"] is True and stats["precise"] is False


def test_a_precise_delta_and_a_delta_within_noise():
    # 16 rounds, no contention: differences 1.9 (x8) and 2.1 (x8). j = floor(8 - 3.92) = 4, k = ceil(11.92) = 12:
    # CI [1.9, 2.1], half-width 0.1 = 5 % of 2.0: precise.
    base = [11.9] * 8 + [12.1] * 8
    stats = delta_stats(base, [10.0] * 16, [3.0] * 16)
    assert stats["delta_ms"] == pytest.approx(2.0) and stats["ci95_ms"] == pytest.approx([1.9, 2.1])
    assert stats["precise"] and stats["half_width_pct"] == pytest.approx(5.0)
    # 25 differences -6, -5.5, ..., 6: median 0. j = floor(12.5 - 4.9) = 7, k = ceil(17.4) = 18: CI [-3, 2.5].
    diffs = [-6 + 0.5 * i for i in range(25)]
    stats = delta_stats([10 + d for d in diffs], [10.0] * 25, [1.0] * 25)
    assert stats["delta_ms"] == pytest.approx(0.0) and stats["ci95_ms"] == pytest.approx([-3.0, 2.5])
    assert not stats["outside_noise"] and not stats["precise"] and math.isinf(stats["half_width_pct"])


def test_median_ci_clips_to_the_sample_and_refuses_nothing():
    assert median_ci([4.0]) == (4.0, 4.0, 4.0)  # n = 1: j and k clip to the only value
    with pytest.raises(ValueError, match="at least one value"):
        median_ci([])
    with pytest.raises(ValueError, match="one timing per round"):
        delta_stats([1.0, 2.0], [1.0], [1.0, 1.0])


def _lut(date="2026-12-06T00:00:00Z"):
    return L.new_lut(device={"name": "host-x"}, runtime={"name": "litert", "threads": 2, "precision": "fp32"},
                     measurement={"tool": "test", "date": date, "runs": 50, "method": "in_context"},
                     search_space=SearchSpace(input_size=64, min_widths=(16, 16, 16, 16),
                                              max_widths=(16, 16, 16, 16), named=()).to_dict())


def test_a_delta_file_from_another_lut_is_refused_in_one_line():
    mine, other = _lut(), _lut(date="2026-12-07T00:00:00Z")
    doc = new_delta_doc(other, "l1")
    with pytest.raises(L.LUTError, match=r"deltas.json was measured with another LUT \(session [0-9a-f]{16}, LUT of "
                                         r"2026-12-07T00:00:00Z\), not this one \(session [0-9a-f]{16}, "
                                         r"2026-12-06T00:00:00Z\); measure the Δs again") as info:
        attach(mine, doc, where="deltas.json")
    assert "\n" not in str(info.value) and "delta_validation" not in mine
    check_session(other, doc)  # its own LUT: accepted
    with pytest.raises(L.LUTError, match="is not a Δ-latency validation file"):
        check_session(mine, {"format": "something else"})


@pytest.fixture(scope="module")
def three_models(tmp_path_factory):
    """Three real tiny .tflite models (4D blocks of growing width) standing in for base, derived and control."""
    from android_ios_bench.export import MANIFEST_NAME, export_items, lut_items

    space = SearchSpace(input_size=64, min_widths=(16, 16, 16, 16), max_widths=(48, 16, 16, 16), named=())
    out = str(tmp_path_factory.mktemp("pair"))
    keys = ["meta4d_c48_r16_m4_p3", "meta4d_c16_r16_m4_p3", "meta4d_c32_r16_m4_p3"]
    export_items([i for i in lut_items(space, "isolated") if i.key in keys], out, search_space=space.to_dict())
    manifest = json.load(open(os.path.join(out, MANIFEST_NAME)))
    paths = {e["key"]: os.path.join(out, e["tflite"]) for e in manifest["entries"]}
    return dict(zip(("base", "derived", "control"), (paths[k] for k in keys)))


def test_pairs_are_timed_with_the_control_in_the_rotation_and_resume(three_models, tmp_path):
    config = EfficientFormerConfig(widths=(48, 16, 16, 16), depths=(1, 1, 1, 1), num_vit=0)
    configs = {"base": config, "derived": config, "ctl": config}
    paths = {"base": three_models["base"], "derived": three_models["derived"], "ctl": three_models["control"]}
    pairs = [ActionPair("base", "derived", "width", 0)]
    out, lut = str(tmp_path / "deltas.json"), _lut()
    doc = measure_pairs(pairs, configs, paths, "ctl", out, lut, min_rounds=30, chunk=30, max_rounds=90)
    record = doc["pairs"][0]
    assert record["rounds"] in (30, 60, 90) and len(record["timings_ms"]["control"]) == record["rounds"]
    recomputed = delta_stats(*(record["timings_ms"][r] for r in ("base", "derived", "control")))
    assert record["kept_rounds"] == recomputed["kept_rounds"]
    assert record["delta_ms"] == pytest.approx(recomputed["delta_ms"])
    assert record["precise"] or record["rounds"] == 90  # stopped when precise, or at the cap
    assert json.load(open(out)) == doc
    again = measure_pairs(pairs, configs, paths, "ctl", out, lut, min_rounds=30, chunk=30, max_rounds=90)
    assert again == doc  # resumed: nothing timed twice
    with pytest.raises(L.LUTError, match="measured with another LUT"):
        measure_pairs(pairs, configs, paths, "ctl", out, _lut(date="2026-12-08T00:00:00Z"))
