"""Android harness: the benchmark_model output parser on recorded outputs, statistics -> LUT
entries, and the adb error paths that can be exercised without a phone."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from android_ios_bench import lut as L
from android_ios_bench.android import (AndroidError, AndroidSettings, BenchmarkOutputError, benchmark_args,
                                       find_adb, measure_manifest_android, parse_benchmark_output, stats_from_results)
from android_ios_bench.android.adb import Adb
from android_ios_bench.units import SearchSpace

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "benchmark_model")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(name):
    with open(os.path.join(FIXTURES, name), newline="") as f:
        return f.read()


# What each recorded output says (read off the fixture text): format, init us, first inference
# us, warm-up count, timed count, timed avg us, timed median us, threads, delegation, XNNPACK line.
EXPECTED = {
    "v1_nostats_cpu.txt": ("nostats", 3912, 9813, 97, 197, 5087.61, None, 4, (), False),
    "v2_average_cpu.txt": ("average", 2734, 4102, 146, 295, 3389.5, None, 2, (), False),
    "v3_timings_peak_memory_cpu.txt": ("timings", 1214, 2874, 281, 566, 1764.88, None, 4, (), False),
    "v4_info_prefix_xnnpack_cpu.txt": ("timings", 6871, 1214, 872, 1748, 570.233, None, 4, (), True),
    "v4_info_prefix_adb_crlf.txt": ("timings", 6871, 1214, 872, 1748, 570.233, None, 4, (), True),
    "v5_percentiles_cpu.txt": ("timings", 11482, 4873, 193, 391, 2560.14, 2548, 2, (), True),
    "v5_percentiles_gpu_delegate.txt": ("timings", 1184620, 2915, 412, 834, 1198.35, 1191, None, (("GPU", "complete"),),
                                False),
    "v5_percentiles_nnapi_partial.txt": ("timings", 412318, 61774, 10, 100, 48391.4, 48206, 4, (("NNAPI", "partial:3"),),
                                 False),
    "v5_percentiles_single_warmup.txt": ("timings", 9204, 1065210, 1, 50, 1.02073e6, 1019866, 1, (), True),
}


def test_every_fixture_is_covered():
    names = {n for n in os.listdir(FIXTURES) if n.endswith(".txt")}
    assert names == set(EXPECTED) | {"error_missing_model.txt", "error_not_benchmark_model.txt"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parser_reads_recorded_outputs(name):
    fmt, init, first, warm_n, n, avg, median, threads, delegation, xnnpack = EXPECTED[name]
    r = parse_benchmark_output(read(name), source=name)
    assert (r.format, r.init_us, r.first_inference_us) == (fmt, init, first)
    assert (r.warmup.count, r.inference.count) == (warm_n, n)
    assert r.inference.avg_us == pytest.approx(avg)
    assert r.inference.median_us == median
    assert r.num_threads == threads and r.delegation == delegation and r.xnnpack_default is xnnpack
    assert r.graph.startswith("/data/local/tmp/ef_bench/") and r.graph.endswith(".tflite")
    assert r.inference.min_us <= r.inference.avg_us <= r.inference.max_us


def test_crlf_fixture_kept_its_line_ends():
    assert read("v4_info_prefix_adb_crlf.txt").count("\r\n") == read("v4_info_prefix_xnnpack_cpu.txt").count("\n")


def test_single_warmup_run_is_the_all_same_stat_line():
    r = parse_benchmark_output(read("v5_percentiles_single_warmup.txt"))
    w = r.warmup
    assert w.count == 1 and w.first_us == w.min_us == w.max_us == w.avg_us == w.median_us == 1065210 and w.std_us == 0


@pytest.mark.parametrize("name, cause", [
    ("error_missing_model.txt", "Failed to mmap model /data/local/tmp/ef_bench/meta4d_c64_r56.tflite"),
    ("error_not_benchmark_model.txt", "no 'Inference timings in us' line"),
])
def test_failures_are_one_line_errors(name, cause):
    with pytest.raises(BenchmarkOutputError, match="benchmark_model") as e:
        parse_benchmark_output(read(name), source=name)
    assert cause in str(e.value) and "\n" not in str(e.value)


def test_truncated_and_inconsistent_outputs_are_refused():
    text = read("v5_percentiles_cpu.txt")
    cut = text[:text.index("INFO: Running benchmark for at least 100")]  # killed before the timed runs
    with pytest.raises(BenchmarkOutputError, match="no 'Inference timings in us' line"):
        parse_benchmark_output(cut)
    no_stats = "\n".join(line for line in text.splitlines() if "count=" not in line)
    with pytest.raises(BenchmarkOutputError, match="found 0"):
        parse_benchmark_output(no_stats)
    with pytest.raises(BenchmarkOutputError, match="inconsistent"):
        parse_benchmark_output(text.replace("Inference (avg): 2560.14", "Inference (avg): 2999.5"))


def test_stats_use_the_tool_median_or_say_it_is_a_mean():
    new = stats_from_results([parse_benchmark_output(read("v5_percentiles_cpu.txt"))])
    assert new["median_ms"] == pytest.approx(2.548) and new["runs"] == 391 and "median_source" not in new
    assert new["mean_ms"] == pytest.approx(2.56014) and new["min_ms"] == pytest.approx(2.487)
    assert "p5 2.499 ms, p95 2.641 ms" in new["note"] and "p10_ms" not in new
    old = stats_from_results([parse_benchmark_output(read("v2_average_cpu.txt"))])
    assert old["median_source"] == "avg" and old["median_ms"] == pytest.approx(3.3895)
    partial = stats_from_results([parse_benchmark_output(read("v5_percentiles_nnapi_partial.txt"))])
    assert "NNAPI delegate partial, 3 kernels" in partial["note"]


def test_rounds_pool_exactly():
    results = [parse_benchmark_output(read(n)) for n in ("v5_percentiles_cpu.txt", "v5_percentiles_gpu_delegate.txt")]
    s = stats_from_results(results)
    counts = np.array([r.inference.count for r in results])
    means = np.array([r.inference.avg_us for r in results]) / 1e3
    stds = np.array([r.inference.std_us for r in results]) / 1e3
    # reference: concatenate samples with each round's exact mean and population std
    samples = np.concatenate([m + sd * np.array([-1.0, 1.0] * (n // 2) + [0.0] * (n % 2)) *
                              np.sqrt(n / (2 * (n // 2))) for m, sd, n in zip(means, stds, counts)])
    assert s["runs"] == samples.size == counts.sum()
    assert s["mean_ms"] == pytest.approx(samples.mean()) and s["std_ms"] == pytest.approx(samples.std())
    assert s["median_ms"] == pytest.approx(np.median([2.548, 1.191])) and "median of 2 rounds" in s["note"]


def test_entries_fill_a_valid_lut():
    doc = L.new_lut(device={"name": "android-google-pixel_7"},
                    runtime={"name": "tflite-benchmark_model", "delegate": None, "threads": 4, "precision": "fp32"},
                    measurement={"tool": "android_ios_bench.android", "date": L.now_iso(), "runs": 100},
                    search_space=SearchSpace().to_dict())
    new = stats_from_results([parse_benchmark_output(read("v5_percentiles_cpu.txt"))])
    old = stats_from_results([parse_benchmark_output(read("v2_average_cpu.txt"))])
    unit = {"cin": 224, "cout": 224, "res": 14, "mlp_ratio": 4, "pool_size": 3}
    doc["entries"][L.unit_key("meta4d", **unit)] = L.make_entry("meta4d", unit, new)
    doc["entries"]["analysis.c.conv1x1"] = L.make_entry("analysis", {"observation": "c", "variant": "conv1x1"}, old)
    L.validate_lut(doc)


def test_benchmark_command_line():
    cmd = benchmark_args(AndroidSettings(threads=2, num_runs=200, warmup_runs=5), "/d/benchmark_model", "/d/m.tflite")
    assert cmd.split() == ["/d/benchmark_model", "--graph=/d/m.tflite", "--num_threads=2", "--warmup_runs=5",
                           "--warmup_min_secs=0", "--num_runs=200", "--min_secs=0"]
    assert "--use_gpu=true" in benchmark_args(AndroidSettings(use_gpu=True), "b", "m")
    with pytest.raises(AndroidError, match="one delegate"):
        AndroidSettings(use_gpu=True, use_nnapi=True)


def test_missing_adb_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AndroidError, match="adb not found on PATH"):
        find_adb()
    manifest = tmp_path / "manifest.json"
    L.save_manifest({"format": L.MANIFEST_FORMAT, "version": 1, "created": L.now_iso(), "precision": "fp32",
                     "search_space": SearchSpace().to_dict(), "entries": []}, manifest)
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    with pytest.raises(AndroidError, match="adb not found"):
        measure_manifest_android(str(manifest), str(binary), str(tmp_path / "lut.json"))
    with pytest.raises(AndroidError, match="benchmark binary not found"):
        measure_manifest_android(str(manifest), str(tmp_path / "nope"), str(tmp_path / "lut.json"))


def test_cli_prints_error_without_traceback(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "PYTHONPATH": ROOT}
    (tmp_path / "bm").write_bytes(b"\x7fELF")
    manifest = tmp_path / "manifest.json"
    L.save_manifest({"format": L.MANIFEST_FORMAT, "version": 1, "created": L.now_iso(), "precision": "fp32",
                     "search_space": SearchSpace().to_dict(), "entries": []}, manifest)
    proc = subprocess.run([sys.executable, "-m", "android_ios_bench.android", f"--manifest={manifest}",
                           f"--benchmark-binary={tmp_path / 'bm'}", f"--lut-out={tmp_path / 'lut.json'}"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: adb not found")
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(shutil.which("adb") is None, reason="adb (Android platform-tools) is not installed")
def test_real_adb_without_a_device():
    """Runs the real adb: with no phone attached the harness must say so in one line."""
    adb = shutil.which("adb")
    try:
        listing = subprocess.run([adb, "devices"], capture_output=True, text=True, timeout=60).stdout
        if any(line.endswith("\tdevice") for line in listing.splitlines()):
            pytest.skip("a device is attached")
        with pytest.raises(AndroidError, match="no Android device attached"):
            Adb()
        with pytest.raises(AndroidError, match="'emulator-5554' is not attached"):
            Adb(serial="emulator-5554")
    finally:
        subprocess.run([adb, "kill-server"], capture_output=True, timeout=60)
