"""Micro-model export through deploy + the host harness (real LiteRT runs on tiny units)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from android_ios_bench import lut as L
from android_ios_bench.export import MANIFEST_NAME, export_items, lut_items
from android_ios_bench.host import measure_manifest
from ef_keras.timing import summarize
from android_ios_bench.units import SearchSpace

SPACE = SearchSpace(input_size=64, max_widths=(16, 16, 16, 32), downsample_points=2)
#: one unit of each kind keeps the export (the slow part) to a few seconds
KEYS = ("stem_c16_r64", "meta4d_c16_r16_m4_p3", "downsample_c16-32_r4", "flat_c32_r2",
        "meta3d_c32_r2_m4_k32_h8_a4", "head_c32_r2_n1000")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("models"))
    items = [i for i in lut_items(SPACE) if i.key in KEYS]
    calls = []
    export_items(items, out, search_space=SPACE.to_dict(), progress=lambda *a: calls.append(a))
    assert len(calls) == len(KEYS)
    return out


def _copy(exported, tmp_path):
    dst = tmp_path / "models"
    shutil.copytree(exported, dst)
    return str(dst / MANIFEST_NAME)


def test_export_writes_a_valid_manifest_and_resumes_without_rebuilding(exported):
    path = os.path.join(exported, MANIFEST_NAME)
    manifest = L.load_manifest(path, require_files="tflite")
    assert [e["key"] for e in manifest["entries"]] == [k for k in (i.key for i in lut_items(SPACE)) if k in KEYS]
    entry = next(e for e in manifest["entries"] if e["kind"] == "meta3d")
    assert entry["input_shape"] == [1, 4, 32] and entry["unit"]["tokens"] == 4 and entry["coreml"] is None
    report = json.load(open(os.path.join(exported, entry["tflite"] + ".report.json")))
    assert report["precision"] == "fp32"
    mtimes = {e["key"]: os.path.getmtime(os.path.join(exported, e["tflite"])) for e in manifest["entries"]}
    export_items([i for i in lut_items(SPACE) if i.key in KEYS], exported, search_space=SPACE.to_dict())
    assert mtimes == {e["key"]: os.path.getmtime(os.path.join(exported, e["tflite"])) for e in manifest["entries"]}
    with pytest.raises(L.ManifestError, match="search_space.max_widths="):
        export_items([], exported, search_space=SearchSpace().to_dict())


def test_measure_writes_a_valid_lut_with_provenance(exported, tmp_path):
    out = tmp_path / "lut.json"
    doc = measure_manifest(os.path.join(exported, MANIFEST_NAME), str(out), runs=7, warmup=1)
    assert doc == L.load_lut(out)
    assert sorted(doc["entries"]) == sorted(KEYS)
    for entry in doc["entries"].values():
        assert entry["runs"] == 7 and 0 < entry["p10_ms"] <= entry["median_ms"] <= entry["p90_ms"]
    assert doc["runtime"] == {"name": "litert", "version": doc["runtime"]["version"], "delegate": "xnnpack",
                              "compute_units": None, "threads": 2, "precision": "fp32"}
    assert doc["search_space"] == SPACE.to_dict() and doc["device"]["name"].startswith("host-")
    assert L.unit_key("meta3d", **doc["entries"]["meta3d_c32_r2_m4_k32_h8_a4"]) == "meta3d_c32_r2_m4_k32_h8_a4"


def test_rerun_measures_only_missing_entries_and_keeps_partial_results(exported, tmp_path):
    manifest, out = os.path.join(exported, MANIFEST_NAME), str(tmp_path / "lut.json")
    measure_manifest(manifest, out, runs=3, warmup=0, keys=KEYS[:2])  # an interrupted run: 2 of 6 saved
    partial = L.load_lut(out)
    assert sorted(partial["entries"]) == sorted(KEYS[:2])
    measured = []
    doc = measure_manifest(manifest, out, runs=3, warmup=0, group_size=2,
                           progress=lambda done, total, key, stats: measured.append((done, total, key)))
    assert sorted(k for _, _, k in measured) == sorted(KEYS[2:])
    assert [(d, t) for d, t, _ in measured] == [(d, 6) for d in range(3, 7)]
    assert all(doc["entries"][k] == partial["entries"][k] for k in KEYS[:2])
    with pytest.raises(L.LUTError, match="runtime.threads=2 there, 1 now"):
        measure_manifest(manifest, out, threads=1, runs=3)
    with pytest.raises(L.LUTError, match="holds fp32 models but --precision is fp16"):
        measure_manifest(manifest, str(tmp_path / "other.json"), precision="fp16", runs=3)


def test_missing_model_file_is_a_one_line_error_and_nothing_is_lost(exported, tmp_path):
    manifest = _copy(exported, tmp_path)
    out = str(tmp_path / "lut.json")
    measure_manifest(manifest, out, runs=3, warmup=0, keys=KEYS[:1])
    before = open(out).read()
    os.remove(os.path.join(os.path.dirname(manifest), "tflite", KEYS[3] + ".tflite"))
    with pytest.raises(L.ManifestError, match=f"entry '{KEYS[3]}' names tflite/{KEYS[3]}.tflite, which does not"):
        measure_manifest(manifest, out, runs=3)
    assert open(out).read() == before


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "android_ios_bench.host", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_cli_measures_a_manifest_and_reports_bad_input_in_one_line(exported, tmp_path):
    out = str(tmp_path / "lut.json")
    manifest = os.path.join(exported, MANIFEST_NAME)
    ok = _cli("--lut-out", out, "--manifest", manifest, "--runs", "50", "--warmup", "1")
    assert ok.returncode == 0, ok.stderr
    assert "wrote" in ok.stdout and len(L.load_lut(out)["entries"]) == len(KEYS)
    for args, message in [(("--runs", "10"), "error: --runs must be >= 50"),
                          (("--manifest", str(tmp_path / "none.json")), "error: manifest file not found"),
                          (("--threads", "4"), "error: " + out + " holds a run with other settings "
                                               "(runtime.threads=2 there, 4 now)")]:
        argv = ["--lut-out", out, "--manifest", manifest, *args]
        bad = _cli(*argv)
        assert bad.returncode == 1 and "Traceback" not in bad.stderr
        assert bad.stderr.strip().splitlines()[-1].startswith(message), bad.stderr


def test_reference_models_are_timed_with_the_units_then_fit_and_drift_check(tmp_path):
    """A complete tiny space: the harness records whole reference models, refits the correction, and
    `--check-lut` re-times them on this host (a ratio, whatever the load)."""
    from android_ios_bench.export import reference_items
    from android_ios_bench.host.cli import check_lut
    from android_ios_bench.predictor import predict, reference_configs

    models = str(tmp_path / "models")
    export_items(lut_items(SPACE) + reference_items(SPACE), models, search_space=SPACE.to_dict())
    doc = measure_manifest(os.path.join(models, MANIFEST_NAME), str(tmp_path / "lut.json"), runs=5, warmup=1)
    names = [n for n, _ in reference_configs(SPACE.to_dict())]
    assert sorted(r["name"] for r in doc["reference_models"]) == sorted(names)
    assert all(0 < r["p10_ms"] <= r["median_ms"] for r in doc["reference_models"])
    fit = doc["correction"]
    assert fit["statistic"] == "min_ms" and fit["fitted_on"] == sorted(names) and fit["loo_mean_abs_pct"] >= 0
    assert L.load_lut(str(tmp_path / "lut.json"))["correction"] == fit
    first = doc["reference_models"][0]
    assert predict(first["config"], doc, input_size=64).ms != predict(first["config"], doc, input_size=64,
                                                                     correction=False).ms
    drift = check_lut(str(tmp_path / "lut.json"), models_dir=str(tmp_path / "again"), runs=5, warmup=1)
    assert sorted(m["name"] for m in drift["models"]) == sorted(names)
    assert set(drift["scale"]) == {"median_ms", "p10_ms", "min_ms"} and all(v > 0 for v in drift["scale"].values())
    doc["device"]["name"] = "pixel-7"
    L.save_lut(doc, str(tmp_path / "phone.json"))
    with pytest.raises(L.LUTError, match="re-time a phone's LUT on the phone"):
        check_lut(str(tmp_path / "phone.json"))


def test_kill_9_mid_measurement_then_rerun_completes_with_no_leftover(exported, tmp_path):
    """The LUT is saved after every group: a measurement killed mid-way resumes, and no temp file stays."""
    import signal
    import time

    manifest = _copy(exported, tmp_path)
    out = tmp_path / "lut.json"
    cmd = [sys.executable, "-m", "android_ios_bench.host", "--manifest", manifest, "--lut-out", str(out),
           "--group-size", "1"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    proc = subprocess.Popen([*cmd, "--runs", "3000"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not out.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = L.load_lut(str(out))["entries"]
    assert 0 < len(first) < len(KEYS)  # killed after some units were saved
    done = subprocess.run([*cmd, "--runs", "50"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = L.load_lut(str(out))
    assert sorted(doc["entries"]) == sorted(KEYS)
    assert {k: doc["entries"][k] for k in first} == first  # what was measured before the kill is kept
    assert sorted(os.listdir(tmp_path)) == ["lut.json", "models"]  # no temp file left beside the LUT
