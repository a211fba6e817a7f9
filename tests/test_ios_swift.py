"""The Swift package android_ios_bench/ios, built and run for real when `swift` is on PATH.

`swift build -c release` builds the `efbench` CLI and `swift test` runs the XCTest suite
(statistics against NumPy's numbers, the timing loop on CPU-bound workloads, manifests, LUT
writing, argument checks). Then the built CLI is driven like a user would: it turns the shared
fixture of raw timings into a LUT that Python's loader accepts and that equals the committed
Swift-written fixture, and it answers bad input with one `error:` line and exit status 1,
writing nothing. Build products stay in the package's `.build/` (ignored by git).

CoreML prediction is not exercised here: it exists only on macOS and iOS.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from android_ios_bench import lut as L
from ef_keras.timing import summarize

if shutil.which("swift") is None:
    pytest.skip("swift is not on PATH: the Swift package android_ios_bench/ios is neither built nor tested here "
                "(install a Swift 5.9+ toolchain to run these tests)", allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "android_ios_bench", "ios")
FIXTURES = os.path.join(PACKAGE, "Fixtures")
#: A clean release build plus `swift test` took about a minute here; leave room on a loaded machine.
BUILD_TIMEOUT = 900


def swift(*args):
    result = subprocess.run(["swift", *args], cwd=PACKAGE, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, f"swift {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def efbench():
    """The release `efbench` binary, built in the package's .build/."""
    swift("build", "-c", "release", "--product", "efbench")
    return os.path.join(swift("build", "-c", "release", "--show-bin-path").strip(), "efbench")


def run(efbench, *args, cwd=None):
    return subprocess.run([efbench, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_swift_test_passes():
    out = swift("test")
    assert " 0 failures" in out and "Executed" in out, out[-2000:]


@pytest.mark.parametrize("name", ["tiny_space", "analysis"])
def test_cli_writes_the_committed_lut_from_raw_timings(efbench, tmp_path, name):
    out = tmp_path / "lut.json"
    folder = os.path.join(FIXTURES, name)
    result = run(efbench, "--manifest", os.path.join(folder, "manifest.json"), "--timings",
                 os.path.join(folder, "raw_timings.json"), "--lut-out", str(out))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    doc = L.load_lut(out)  # validates against android_ios_bench/schema/lut.schema.json
    with open(os.path.join(folder, "lut.json")) as f:
        assert doc == json.load(f), f"Fixtures/{name}/lut.json is stale: run make_ios_fixtures.py --luts-only"
    with open(os.path.join(folder, "raw_timings.json")) as f:
        raw = json.load(f)["timings_ms"]
    for key, entry in doc["entries"].items():
        python = summarize(raw[key])
        assert {k: entry[k] for k in python} == pytest.approx(python, rel=1e-12, abs=0), key
    assert f"wrote {out}: {len(doc['entries'])} entries, {len(doc.get('reference_models', []))} reference" \
        in result.stdout


def test_help_prints_usage(efbench):
    result = run(efbench, "--help")
    assert result.returncode == 0 and "--timings RAW" in result.stdout and "--compute-units" in result.stdout


def _setup(name, tmp_path):
    """Writes a case's inputs into tmp_path; returns the argv (paths relative to tmp_path)."""
    manifest = os.path.join(FIXTURES, "tiny_space", "manifest.json")
    raw = os.path.join(FIXTURES, "tiny_space", "raw_timings.json")
    measure = ["--manifest", manifest, "--lut-out", "lut.json"]
    if name == "malformed_manifest":
        (tmp_path / "manifest.json").write_text('{"format": "ef-keras-latency-manifest", "entries": [')
        return ["--manifest", "manifest.json", "--lut-out", "lut.json"]
    if name == "existing_lut_out":
        (tmp_path / "lut.json").write_text("precious")
        return ["--manifest", manifest, "--timings", raw, "--lut-out", "lut.json"]
    return {
        "missing_manifest": ["--manifest", "nowhere/manifest.json", "--lut-out", "lut.json"],
        "models_missing": measure,
        "unwritable_lut_out": ["--manifest", manifest, "--timings", raw, "--lut-out", "no_such_dir/lut.json"],
        "runs_0": [*measure, "--runs", "0"],
        "unknown_compute_unit": [*measure, "--compute-units", "npu"],
        "unknown_flag": [*measure, "--threads", "2"],
        "raw_timings_of_another_manifest": ["--manifest", os.path.join(FIXTURES, "analysis", "manifest.json"),
                                            "--timings", raw, "--lut-out", "lut.json"],
    }[name]


BAD = {
    "missing_manifest": "manifest not found or unreadable",
    "malformed_manifest": "is not a valid manifest (not valid JSON)",
    "models_missing": "76 of 76 CoreML models of the manifest are missing",
    "unwritable_lut_out": "is not an existing directory",
    "runs_0": "--runs 0 is too small",
    "unknown_compute_unit": "--compute-units npu is unknown",
    "unknown_flag": "unknown flag --threads",
    "existing_lut_out": "already exists; choose another --lut-out",
    "raw_timings_of_another_manifest": "another search space",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_cli_bad_input_is_one_line_and_writes_nothing(efbench, tmp_path, name):
    argv = _setup(name, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = run(efbench, *argv, cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and BAD[name] in lines[0], result.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.skipif(sys.platform == "darwin", reason="CoreML exists here: efbench would time the model")
def test_cli_says_coreml_timing_needs_an_apple_system(efbench, tmp_path):
    """A real export (deploy.to_coreml) passes every check; then the missing CoreML is the one error."""
    from android_ios_bench.analysis import analysis_items
    from android_ios_bench.export import export_items
    from android_ios_bench.units import SearchSpace

    item = next(i for i in analysis_items(reduced=True) if i.key.endswith("conv1x1_bn"))
    export_items([item], str(tmp_path / "models"), search_space=SearchSpace().to_dict(), tflite=False, coreml=True)
    result = run(efbench, "--manifest", str(tmp_path / "models" / "manifest.json"), "--lut-out",
                 str(tmp_path / "lut.json"), "--raw-out", str(tmp_path / "lut.raw.json"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["error: timing CoreML models needs macOS or iOS: CoreML is not available "
                                          "on this system (here efbench can only turn recorded timings into a LUT, "
                                          "with --timings RAW)"]
    assert sorted(os.listdir(tmp_path)) == ["models"]
