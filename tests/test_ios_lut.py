"""The Swift harness' outputs on the Python side, from the shared fixtures (no Swift needed).

android_ios_bench/ios/Fixtures/ holds manifests exported for real, the raw per-call timings of
their models (timed on this host), and the LUTs the Swift CLI wrote from those timings
(`efbench --timings`; tests/test_ios_swift.py re-runs it when `swift` is on PATH and checks the
committed LUTs are what it writes). Here: the statistics agree with NumPy and with
`ef_keras.timing.summarize`, Python's loader, predictor and analysis read a Swift-written LUT,
and the correction is fitted on its reference models as for a host table (`finish_lut`).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from android_ios_bench import lut as L
from android_ios_bench.analysis import rows_from_lut
from android_ios_bench.ios import finish_lut
from android_ios_bench.correction import CORRECTION_STATISTIC
from android_ios_bench.refit import refit_correction
from android_ios_bench.predictor import predict
from ef_keras.timing import summarize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "android_ios_bench", "ios", "Fixtures")
STATISTICS = ("min_ms", "p10_ms", "median_ms", "p90_ms", "mean_ms", "max_ms", "std_ms")


def fixture(*path):
    with open(os.path.join(FIXTURES, *path)) as f:
        return json.load(f)


def test_statistics_fixture_is_numpys_and_summarize_agrees():
    cases = fixture("statistics.json")["cases"]
    assert len(cases) >= 7
    for case in cases:
        t = np.asarray(case["samples_ms"], dtype=np.float64)
        p10, median, p90 = np.percentile(t, [10, 50, 90])
        numpy = {"min_ms": t.min(), "p10_ms": p10, "median_ms": median, "p90_ms": p90, "mean_ms": t.mean(),
                 "max_ms": t.max(), "std_ms": t.std()}
        assert case["numpy"] == numpy, case["name"]  # the fixture is NumPy's
        stats = summarize(case["samples_ms"])
        assert {k: stats[k] for k in STATISTICS} == case["numpy"], case["name"]
        assert stats["runs"] == len(case["samples_ms"])


def test_summarize_matches_hand_computed_percentiles():
    # sorted 1, 2, 3, 4, 10 (type 7): p10 at position 0.4 -> 1.4, median 3, p90 at 3.6 -> 7.6; std = sqrt(50 / 5)
    stats = summarize([4, 1, 10, 3, 2])
    assert (stats["p10_ms"], stats["median_ms"], stats["p90_ms"]) == pytest.approx((1.4, 3.0, 7.6), abs=1e-12)
    assert stats["std_ms"] == pytest.approx(10 ** 0.5, abs=1e-12) and stats["mean_ms"] == 4.0


@pytest.mark.parametrize("name", ["tiny_space", "analysis"])
def test_swift_statistics_equal_pythons(name):
    """Every statistic Swift wrote equals `summarize` of the same raw samples (to rounding)."""
    lut, raw, manifest = fixture(name, "lut.json"), fixture(name, "raw_timings.json"), fixture(name, "manifest.json")
    kinds = {e["key"]: e for e in manifest["entries"]}
    refs = {r["name"]: r for r in lut.get("reference_models", [])}
    assert len(lut["entries"]) + len(refs) == len(raw["timings_ms"]) == len(manifest["entries"])
    for key, samples in raw["timings_ms"].items():
        python = summarize(samples)
        entry = kinds[key]
        swift = refs[entry["unit"]["name"]] if entry["kind"] == "model" else lut["entries"][key]
        written = {k: v for k, v in swift.items() if k in python}
        assert set(written) == ({"median_ms", "p10_ms", "min_ms", "runs"} if entry["kind"] == "model"
                                else set(python)), key
        assert written == pytest.approx({k: python[k] for k in written}, rel=1e-12, abs=0), key


def test_swift_lut_is_valid_and_keeps_the_sessions_provenance():
    doc = L.load_lut(os.path.join(FIXTURES, "tiny_space", "lut.json"))
    raw, manifest = fixture("tiny_space", "raw_timings.json"), fixture("tiny_space", "manifest.json")
    for section in ("device", "runtime"):
        assert doc[section] == raw[section]
    assert doc["search_space"] == manifest["search_space"]
    assert "efbench" in doc["measurement"]["notes"] and doc["measurement"]["date"] == raw["measurement"]["date"]
    assert "correction" not in doc  # Swift records; Python fits
    assert [r["name"] for r in doc["reference_models"]] == [f"ref{i}" for i in range(6)]
    configs = {e["unit"]["name"]: e["unit"]["config"] for e in manifest["entries"] if e["kind"] == "model"}
    assert all(r["config"] == configs[r["name"]] for r in doc["reference_models"])


def test_predictor_reads_a_swift_lut_and_refits_its_correction():
    doc = L.load_lut(os.path.join(FIXTURES, "tiny_space", "lut.json"))
    refs = doc["reference_models"]
    plain = [predict(r["config"], doc, input_size=64, correction=False, statistic=CORRECTION_STATISTIC).sum_ms
             for r in refs]
    assert all(p > 0 for p in plain)
    fit = refit_correction(doc)
    assert fit is not None and fit is doc["correction"]
    assert fit["statistic"] == CORRECTION_STATISTIC and fit["fitted_on"] == [r["name"] for r in refs]
    assert fit["form"] in ("global", "per_family") and fit["loo_mean_abs_pct"] >= 0
    L.validate_lut(doc)
    corrected = [predict(r["config"], doc, input_size=64).ms for r in refs]
    measured = np.array([r[CORRECTION_STATISTIC] for r in refs])
    # least squares on relative error includes the identity (scales 1, constant 0): it can only do better
    assert np.sum(((corrected - measured) / measured) ** 2) <= np.sum(((plain - measured) / measured) ** 2) + 1e-12


def test_finish_lut_merges_partial_swift_luts_and_fits_like_the_host(tmp_path):
    whole = fixture("tiny_space", "lut.json")
    keys = sorted(whole["entries"])
    first = {**whole, "entries": {k: whole["entries"][k] for k in keys[:30]}}
    first.pop("reference_models")
    second = {**whole, "entries": {k: whole["entries"][k] for k in keys[30:]}}
    parts = []
    for i, part in enumerate((first, second)):
        parts.append(tmp_path / f"part{i}.json")
        parts[-1].write_text(json.dumps(part))
    out = tmp_path / "iphone.json"
    doc = finish_lut(parts, out)
    assert L.load_lut(out) == doc
    expected = json.loads(json.dumps(whole))
    refit_correction(expected)  # what the host and Android harnesses do after measuring
    assert doc["entries"] == whole["entries"] and doc["reference_models"] == whole["reference_models"]
    assert doc["correction"] == expected["correction"]
    with pytest.raises(L.LUTError, match="already exists; pass --overwrite"):
        finish_lut(parts, out)
    with pytest.raises(L.LUTError, match="LUT file not found"):
        finish_lut([tmp_path / "missing.json"], tmp_path / "x.json")
    with pytest.raises(L.LUTError, match="at least one LUT"):
        finish_lut([], tmp_path / "x.json")
    assert sorted(os.listdir(tmp_path)) == ["iphone.json", "part0.json", "part1.json"]


def test_finish_cli_prints_the_fitted_correction(tmp_path):
    out = tmp_path / "iphone.json"
    result = subprocess.run([sys.executable, "-m", "android_ios_bench.ios", "--lut",
                             os.path.join(FIXTURES, "tiny_space", "lut.json"), "--lut-out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr
    fit = L.load_lut(out)["correction"]
    assert f"correction: {fit['form']} on {fit['statistic']}" in result.stdout
    assert "70 entries, 6 reference models" in result.stdout


def test_analysis_reads_a_swift_lut():
    doc = L.load_lut(os.path.join(FIXTURES, "analysis", "lut.json"))
    rows, meta = rows_from_lut(doc, reduced=True)
    assert len(rows) == len(doc["entries"]) == 16 and meta["runs per model"] == doc["measurement"]["runs"]
