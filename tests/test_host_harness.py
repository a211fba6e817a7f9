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
from android_ios_bench.host.harness import DIFFERENCED, FLOOR_MS, non_monotone, plan_groups, rows, timings_path
from android_ios_bench.units import SearchSpace
from ef_keras.timing import summarize

#: A complete tiny space at 64 px: stage 4 has two widths (32, 48), so its rows can be checked.
SPACE = SearchSpace(input_size=64, min_widths=(16, 16, 16, 32), max_widths=(16, 16, 16, 48), named=())
KEYS = ("stem_c16_r64", "meta4d_c16_r16_m4_p3", "downsample_c16-32_r4", "flat_c32_r2",
        "meta3d_c32_r2_m4_k32_h8_a4", "head_c32_r2_n1000")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every unit of SPACE alone and in context (31 tiny models: the slow part, shared by the module)."""
    out = str(tmp_path_factory.mktemp("models"))
    calls = []
    export_items(lut_items(SPACE, "in_context"), out, search_space=SPACE.to_dict(), progress=lambda *a: calls.append(a))
    assert len(calls) == 31
    return out


def _copy(exported, tmp_path):
    dst = tmp_path / "models"
    shutil.copytree(exported, dst)
    return str(dst / MANIFEST_NAME)


def test_export_writes_units_alone_and_in_context_and_resumes_without_rebuilding(exported):
    path = os.path.join(exported, MANIFEST_NAME)
    manifest = L.load_manifest(path, require_files="tflite")
    by_key = {e["key"]: e for e in manifest["entries"]}
    assert sorted(by_key) == sorted(i.key for i in lut_items(SPACE, "in_context"))
    ctx = by_key["downsample_c16-32_r4.ctx"]
    assert ctx["kind"] == "context" and ctx["unit"]["context"] == "meta4d_c16_r4_m4_p3"
    assert ctx["unit"]["kind"] == "downsample" and ctx["input_shape"] == [1, 4, 4, 16]
    assert by_key["head_c32_r2_n1000.ctx"]["unit"]["context"] == "meta3d_c32_r2_m4_k32_h8_a4"
    assert "stem_c16_r64.ctx" not in by_key  # the stem runs first: timed alone
    mtimes = {e["key"]: os.path.getmtime(os.path.join(exported, e["tflite"])) for e in manifest["entries"]}
    export_items(lut_items(SPACE, "in_context"), exported, search_space=SPACE.to_dict())
    assert mtimes == {e["key"]: os.path.getmtime(os.path.join(exported, e["tflite"])) for e in manifest["entries"]}
    with pytest.raises(L.ManifestError, match="search_space.max_widths="):
        export_items([], exported, search_space=SearchSpace().to_dict())


def test_in_context_groups_keep_each_context_with_the_units_timed_after_it(exported):
    entries = L.load_manifest(os.path.join(exported, MANIFEST_NAME))["entries"]
    groups = plan_groups(entries, "in_context", group_size=4)
    assert sorted(k for g in groups for k in g if not any(k == g[0] for g in groups)) == sorted(
        {e["key"] for e in entries} - {g[0] for g in groups})
    for g in groups:
        for key in g:
            if key.endswith(".ctx"):
                assert g[0] == next(e["unit"]["context"] for e in entries if e["key"] == key)
        assert len(g) <= 4


def test_in_context_entries_are_the_differences_of_the_journal(exported, tmp_path):
    """Each in-context entry is (context + unit) - (context alone) as timed in one group of the journal."""
    out = tmp_path / "lut.json"
    doc = measure_manifest(os.path.join(exported, MANIFEST_NAME), str(out), runs=7, warmup=1, retime_passes=0,
                           method="in_context")
    assert doc == L.load_lut(out)
    assert doc["measurement"]["method"] == "in_context" and doc["search_space"] == SPACE.to_dict()
    assert doc["runtime"] == {"name": "litert", "version": doc["runtime"]["version"], "delegate": "xnnpack",
                              "compute_units": None, "threads": 2, "precision": "fp32"}
    journal = json.load(open(timings_path(str(out))))
    assert len(journal["groups"]) == 1 and len(journal["groups"][0]["times_ms"]) == 31  # one rotation of all
    assert len(doc["entries"]) == 16
    for key, entry in doc["entries"].items():
        if key.startswith("stem"):
            assert "context" not in entry and entry["runs"] == 7
            continue
        times = journal["groups"][0]["times_ms"]
        both, alone = summarize(times[f"{key}.ctx"]), summarize(times[entry["context"]])
        for stat in DIFFERENCED:
            assert entry[stat] == pytest.approx(max(both[stat] - alone[stat], FLOOR_MS))
        assert ("free within noise" in entry.get("note", "")) == (both["median_ms"] - alone["median_ms"] <= FLOOR_MS)


def test_units_alone_in_one_rotation_by_default_or_in_small_rotations(exported, tmp_path):
    manifest = os.path.join(exported, MANIFEST_NAME)
    doc = measure_manifest(manifest, str(tmp_path / "lut.json"), runs=5, warmup=0, keys=KEYS, retime_passes=0)
    assert sorted(doc["entries"]) == sorted(KEYS) and doc["measurement"]["method"] == "in_rotation"
    assert doc["measurement"]["order"] == "one rotation of every model, shuffled per round"
    assert all("context" not in e for e in doc["entries"].values())
    small = measure_manifest(manifest, str(tmp_path / "small.json"), runs=5, warmup=0, keys=KEYS, method="isolated",
                             group_size=4, retime_passes=0)
    assert small["measurement"]["method"] == "isolated"
    assert len(json.load(open(tmp_path / "small.timings.json"))["groups"]) == 2  # 6 units in rotations of 4
    with pytest.raises(L.LUTError, match="method in_rotation times every model in one rotation"):
        measure_manifest(manifest, str(tmp_path / "x.json"), group_size=4)
    with pytest.raises(L.LUTError, match="method isolated times units in small rotations"):
        measure_manifest(manifest, str(tmp_path / "x.json"), method="isolated")


def test_a_non_monotone_row_is_re_timed_before_the_lut_is_written(exported, tmp_path):
    """A journal whose stage-4 attention row got cheaper with width (as a contended stretch would leave it):
    the harness flags the two neighbours and times both again, in one rotation with twice the rounds."""
    manifest, out = os.path.join(exported, MANIFEST_NAME), str(tmp_path / "lut.json")
    measure_manifest(manifest, out, runs=5, warmup=0, retime_passes=0)
    journal_path = timings_path(out)
    journal = json.load(open(journal_path))
    narrow, wide = "meta3d_c32_r2_m4_k32_h8_a4", "meta3d_c48_r2_m4_k32_h8_a4"
    times = journal["groups"][0]["times_ms"]
    times[wide] = [t / 2 for t in times[narrow]]  # 48 channels at half the time of 32
    json.dump(journal, open(journal_path, "w"))
    os.remove(out)  # the LUT is rebuilt from the journal: nothing is timed again but the flagged row
    seen = []
    doc = measure_manifest(manifest, out, runs=5, warmup=0, log=seen.append)
    assert any(line.startswith("re-timing pass 1:") for line in seen)
    assert {narrow, wide} <= set(doc["measurement"]["retimed"])
    retimes = json.load(open(journal_path))["groups"][1:]
    first = retimes[0]
    assert first["runs"] == 10 and {narrow, wide} <= set(first["times_ms"])
    assert len(first["times_ms"]) == 31  # padded with the other micro-models (the manifest has 31)
    after = [g for g in retimes if wide in g["times_ms"] and wide not in g["anchors"]][-1]  # a 2nd pass may re-time
    # on the main rotation's scale: times the median ratio over the anchors (main / re-timing) of the median
    anchors = after["anchors"]
    assert wide not in anchors and after["scaled_to"] == 0
    ratio = sorted(summarize(times[a])["median_ms"] / summarize(after["times_ms"][a])["median_ms"] for a in anchors)
    scale = (ratio[len(ratio) // 2] + ratio[(len(ratio) - 1) // 2]) / 2
    assert doc["entries"][wide]["median_ms"] == pytest.approx(summarize(after["times_ms"][wide])["median_ms"] * scale)
    still = {k for pair in doc["measurement"]["non_monotone"] for k in pair}
    assert all(("not monotone" in doc["entries"][k].get("note", "")) == (k in still) for k in doc["entries"])


def test_rows_run_along_width_and_both_downsampling_axes():
    entries = {}
    for cin in (16, 32):
        for cout in (32, 48):
            entries[f"d{cin}-{cout}"] = {"kind": "downsample", "cin": cin, "cout": cout, "res": 8,
                                         "p10_ms": cin * cout / 100}
    entries["m32"] = {"kind": "meta4d", "cin": 32, "res": 8, "mlp_ratio": 4, "pool_size": 3, "p10_ms": 1.0}
    entries["m48"] = {"kind": "meta4d", "cin": 48, "res": 8, "mlp_ratio": 4, "pool_size": 3, "p10_ms": 0.9}
    assert sorted(map(tuple, rows(entries))) == sorted([("d16-32", "d16-48"), ("d32-32", "d32-48"),
                                                        ("d16-32", "d32-32"), ("d16-48", "d32-48"), ("m32", "m48")])
    assert non_monotone(entries, "p10_ms") == [("m32", "m48")]  # 10 % cheaper: flagged
    entries["m48"]["p10_ms"] = 0.98  # 2 % cheaper: within the tolerance
    assert non_monotone(entries, "p10_ms") == []


def test_rerun_measures_only_missing_models_and_keeps_partial_results(exported, tmp_path):
    manifest, out = os.path.join(exported, MANIFEST_NAME), str(tmp_path / "lut.json")
    measure_manifest(manifest, out, runs=3, warmup=0, keys=KEYS[:2], retime_passes=0)  # an interrupted run
    partial = L.load_lut(out)
    assert sorted(partial["entries"]) == sorted(KEYS[:2])
    measured = []
    doc = measure_manifest(manifest, out, runs=3, warmup=0, retime_passes=0,
                           progress=lambda done, total, key, stats: measured.append(key))
    assert not {"stem_c16_r64", "meta4d_c16_r16_m4_p3"} & set(measured)
    assert all(doc["entries"][k] == partial["entries"][k] for k in KEYS[:2])
    with pytest.raises(L.LUTError, match="runtime.threads=2 there, 1 now"):
        measure_manifest(manifest, out, threads=1, runs=3)
    with pytest.raises(L.LUTError, match="measurement.method='in_rotation' there, 'in_context' now"):
        measure_manifest(manifest, out, method="in_context", runs=3)
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
    assert "wrote" in ok.stdout and len(L.load_lut(out)["entries"]) == 16
    for args, message in [(("--runs", "10"), "error: --runs must be >= 50"),
                          (("--manifest", str(tmp_path / "none.json")), "error: manifest file not found"),
                          (("--threads", "4"), "error: " + out + " holds a run with other settings "
                                               "(runtime.threads=2 there, 4 now)"),
                          (("--method", "in_context"), "error: " + out + " holds a run with other settings "
                                                       "(measurement.method='in_rotation' there, 'in_context' now)")]:
        argv = ["--lut-out", out, "--manifest", manifest, *args]
        bad = _cli(*argv)
        assert bad.returncode == 1 and "Traceback" not in bad.stderr
        assert bad.stderr.strip().splitlines()[-1].startswith(message), bad.stderr


def test_reference_models_are_timed_with_the_units_then_fit_and_drift_check(exported, tmp_path):
    """The harness records whole reference models, refits the correction, and `--check-lut` re-times
    them on this host (a ratio, whatever the load)."""
    from android_ios_bench.export import reference_items
    from android_ios_bench.host.cli import check_lut
    from android_ios_bench.predictor import predict

    models = str(tmp_path / "models")
    shutil.copytree(exported, models)
    refs = reference_items(SPACE, n_random=3, walk_steps=(), pair_states=())
    export_items(refs, models, search_space=SPACE.to_dict())
    doc = measure_manifest(os.path.join(models, MANIFEST_NAME), str(tmp_path / "lut.json"), runs=5, warmup=1,
                           retime_passes=0)
    names = sorted(i.unit["name"] for i in refs)
    assert sorted(r["name"] for r in doc["reference_models"]) == names == ["random0", "random1", "random2",
                                                                            "supernet"]
    assert all(0 < r["p10_ms"] <= r["median_ms"] for r in doc["reference_models"])
    fit = doc["correction"]
    assert fit["statistic"] == "median_ms" and fit["fitted_on"] == names and fit["delta_validated"] is False
    assert L.load_lut(str(tmp_path / "lut.json"))["correction"] == fit
    first = doc["reference_models"][0]
    assert predict(first["config"], doc, input_size=64).ms != predict(first["config"], doc, input_size=64,
                                                                     correction=False).ms
    drift = check_lut(str(tmp_path / "lut.json"), models_dir=str(tmp_path / "again"), runs=5, warmup=1)
    assert sorted(m["name"] for m in drift["models"]) == names
    assert set(drift["scale"]) == {"median_ms", "p10_ms", "min_ms"} and all(v > 0 for v in drift["scale"].values())
    doc["device"]["name"] = "pixel-7"
    L.save_lut(doc, str(tmp_path / "phone.json"))
    with pytest.raises(L.LUTError, match="re-time a phone's LUT on the phone"):
        check_lut(str(tmp_path / "phone.json"))


def test_kill_9_mid_rotation_then_rerun_finishes_it_with_no_leftover(exported, tmp_path):
    """The journal is saved every few rounds of the rotation: a measurement killed mid-way finishes the same
    rotation on the next run, keeping every timing it had, and no temp file stays."""
    import signal
    import time

    from android_ios_bench.host.harness import ROUNDS_PER_SAVE

    manifest = _copy(exported, tmp_path)
    out = tmp_path / "lut.json"
    journal = tmp_path / "lut.timings.json"
    cmd = [sys.executable, "-m", "android_ios_bench.host", "--manifest", manifest, "--lut-out", str(out),
           "--runs", "1000"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not journal.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = json.load(open(journal))["groups"][0]["times_ms"]
    assert ROUNDS_PER_SAVE <= len(first["stem_c16_r64"]) < 1000 and not out.exists()  # killed mid-rotation
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = L.load_lut(str(out))
    assert len(doc["entries"]) == 16 and all(e["runs"] in (1000, 2000) for e in doc["entries"].values())
    after = json.load(open(journal))["groups"][0]["times_ms"]
    assert all(after[k][:len(t)] == t for k, t in first.items())  # what was measured before the kill is kept
    assert sorted(os.listdir(tmp_path)) == ["lut.json", "lut.timings.json", "models"]  # no temp file left
