"""The Δ test-retest of `benchmarks/lut_validation.py` on a hand-made pair of sessions.

Expected values are worked out by hand below, not by the code under test.
"""

from benchmarks.lut_validation import delta_retest


def _pair(derived, delta, base, ci, outside=True):
    return {"base": "b", "derived": derived, "delta_ms": delta, "base_ms": base, "ci95_ms": list(ci),
            "outside_noise": outside}


def test_delta_retest_of_two_sessions_worked_out_by_hand():
    this = {"delta_validation": {"pairs": [_pair("d1", 1.0, 20.0, (0.8, 1.2)), _pair("d2", 0.5, 20.0, (0.4, 0.6)),
                                           _pair("d3", 0.2, 20.0, (-0.1, 0.5))]}}
    other = {"delta_validation": {"pairs": [_pair("d1", 1.2, 24.0, (1.1, 1.3)), _pair("d2", -0.4, 20.0, (-0.5, -0.3)),
                                            _pair("d3", 0.1, 20.0, (-0.2, 0.4), outside=False)]}}
    r = delta_retest(this, other)
    # d1: 1.0/20 = 5 % here, 1.2/24 = 5 % there -> 0 % apart; CIs [0.8, 1.2] and [1.1, 1.3] overlap.
    # d2: 0.5/20 = 2.5 % here, -0.4/20 = -2 % there -> (2.5 + 2) / 2 = 225 % of the saving there;
    #     CIs [0.4, 0.6] and [-0.5, -0.3] do not overlap, and the sign flips.
    # d3 is within noise there: left out.
    assert [(p["derived"], round(p["diff_pct"], 9), p["cis_overlap"]) for p in r["pairs"]] == [
        ("d1", 0.0, True), ("d2", 225.0, False)]
    assert r["mean_abs_pct"] == r["median_abs_pct"] == 112.5
    assert r["overlapping_cis"] == 1 and r["sign_flips"] == 1
