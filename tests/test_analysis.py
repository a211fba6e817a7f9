"""The Section 3 latency analysis: a reduced real run on the host backend (export through deploy,
LiteRT timing, report), the LUT round trip that device harness outputs take, and the verdicts."""

import csv
import json
import os
import subprocess
import sys

import pytest

from android_ios_bench import lut as L
from android_ios_bench.analysis import (AnalysisError, analysis_key, observations, report, rows_from_lut,
                                        run_analysis)
from android_ios_bench.analysis.micro_models import REDUCED
from android_ios_bench.analysis.tflite_stats import describe_tflite

N_VARIANTS = sum(len(o.variants) for o in observations())


@pytest.fixture(scope="module")
def host_run(tmp_path_factory):
    """One reduced run: 16 micro-models exported with deploy.to_tflite and timed with LiteRT."""
    root = tmp_path_factory.mktemp("analysis")
    result = run_analysis(str(root / "out"), reduced=True, models_dir=str(root / "models"), warmup=1, runs=5)
    return root, result


def test_host_run_writes_table_chart_and_verdicts(host_run):
    root, result = host_run
    paths = result["paths"]
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [(r["observation"], r["variant"]) for r in rows] == [(o.key, v.name) for o in observations()
                                                                for v in o.variants]
    assert all(float(r["median_ms"]) > 0 and int(r["runs"]) == 5 for r in rows)
    md = open(paths["md"]).read()
    assert md.count("**Verdict on litert") == 4 and "LayerNorm-Linear" in md
    for status, evidence in result["verdicts"].values():
        assert status in ("holds", "partly holds", "does not hold") and "\n" not in evidence
    with open(paths["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert json.load(open(paths["json"]))["verdicts"].keys() == {"a", "b", "c", "d"}
    lut = L.load_lut(result["lut"])  # the host measurements are a valid LUT
    assert lut["runtime"]["name"] == "litert" and len(lut["entries"]) == N_VARIANTS


def test_exported_graphs_show_what_the_converter_did(host_run):
    root, result = host_run
    ops = {r["variant"]: r["ops"] for r in result["rows"]}
    assert ops["conv1x1_bn"] == ops["conv1x1"]  # BatchNorm folded into the conv
    assert "HARD_SWISH" in ops["mlp_hardswish"] and "GELU" in ops["mlp_gelu"]
    assert ops["mlp_relu"] == ops["mlp_none"]  # ReLU fused into CONV_2D
    assert ops["levit_4d3d_nchw"].get("TRANSPOSE", 0) > ops["levit_4d3d_reshape"].get("TRANSPOSE", 0)
    assert sum(ops["layernorm_linear"].values()) > sum(ops["linear"].values())
    # MACs read from the flatbuffer agree with the formula for a 7x7 stride-4 conv
    s = REDUCED
    out = (s.image + 4 - 7) // 4 + 1
    mmacs = {r["variant"]: r["mmacs"] for r in result["rows"]}
    assert mmacs["embed_7x7_s4"] == pytest.approx(out * out * s.embed_width * 7 * 7 * 3 / 1e6)
    manifest = L.load_manifest(root / "models" / "manifest.json", require_files="tflite")
    path = next(os.path.join(manifest["_dir"], e["tflite"]) for e in manifest["entries"]
                if e["key"] == analysis_key("a", "embed_16x16_s16", True))
    assert describe_tflite(path)["macs"] == (s.image // 16) ** 2 * s.deit_width * 16 * 16 * 3


def test_report_from_a_lut_reads_its_medians(host_run, tmp_path):
    """A report made from a LUT shows that LUT's timings: give every entry a known median and read it back."""
    _, result = host_run
    doc = L.load_lut(result["lut"])
    written = {}
    for i, (obs, variant) in enumerate((o, v) for o in observations() for v in o.variants):
        median = 1.0 if variant.name == obs.baseline else 2.0 + 0.25 * i
        entry = doc["entries"][analysis_key(obs.key, variant.name, True)]
        entry.update(median_ms=median, p10_ms=0.9 * median, p90_ms=1.1 * median)
        written[(obs.key, variant.name)] = median
    L.save_lut(doc, tmp_path / "edited.json")
    again = run_analysis(str(tmp_path / "out"), lut_from=str(tmp_path / "edited.json"), reduced=True)
    for row in again["rows"]:
        median = written[(row["observation"], row["variant"])]
        assert row["median_ms"] == median and row["vs_baseline"] == pytest.approx(median)
    assert os.path.exists(again["paths"]["png"])


def test_report_from_an_android_style_lut_without_percentiles(host_run, tmp_path):
    _, result = host_run
    doc = L.load_lut(result["lut"])
    for entry in doc["entries"].values():  # what android_ios_bench.android writes for old tools
        del entry["p10_ms"], entry["p90_ms"]
        entry["median_source"] = "avg"
    L.save_lut(doc, tmp_path / "android.json")
    again = run_analysis(str(tmp_path / "out"), lut_from=str(tmp_path / "android.json"), reduced=True)
    assert all(r["p10_ms"] is None for r in again["rows"]) and os.path.getsize(again["paths"]["png"]) > 0


def test_rerun_resumes_without_re_measuring(host_run):
    root, result = host_run
    before = L.load_lut(result["lut"])["entries"]
    again = run_analysis(str(root / "out"), reduced=True, models_dir=str(root / "models"), warmup=1, runs=5)
    assert L.load_lut(again["lut"])["entries"] == before


def test_a_lut_without_the_analysis_entries_is_refused(host_run):
    _, result = host_run
    doc = L.load_lut(result["lut"])
    del doc["entries"][analysis_key("b", "mhsa_3d", True)]
    with pytest.raises(AnalysisError, match="lacks 1 of the analysis entries .*--export-only --reduced"):
        rows_from_lut(doc, reduced=True)
    with pytest.raises(AnalysisError, match="lacks 16"):
        rows_from_lut(doc, reduced=False)


def _rows(times):
    return [{"observation": o.key, "variant": v.name, "median_ms": times[v.name], "mmacs": 1.0,
             "ops": {"CONV_2D": 1}} for o in observations() for v in o.variants]


BASE = {"embed_16x16_s16": 1.0, "embed_7x7_s4": 1.0, "stem_3x3_s2_x2": 1.0, "pool_mixer_4d": 1.0, "mhsa_3d": 2.0,
        "mhsa_bnmlp_3d": 2.0, "levit_4d3d_reshape": 2.0, "levit_4d3d_nchw": 2.0, "conv1x1": 1.0,
        "conv1x1_bn": 1.0, "linear": 1.0, "layernorm_linear": 1.0, "mlp_none": 1.0, "mlp_relu": 1.0,
        "mlp_gelu": 1.0, "mlp_hardswish": 1.0}


@pytest.mark.parametrize("changes, key, status", [
    ({}, "a", "does not hold"),
    ({"embed_7x7_s4": 1.5}, "a", "holds"),                        # large kernel slower at equal output
    ({}, "b", "does not hold"),
    ({"levit_4d3d_nchw": 2.4}, "b", "holds"),                     # +20% from the 4D<->3D switches
    ({"levit_4d3d_reshape": 2.1}, "b", "does not hold"),          # +5% is within the tie margin
    ({}, "c", "does not hold"),
    ({"layernorm_linear": 1.3}, "c", "holds"),
    ({}, "d", "partly holds"),                                    # GELU ~ ReLU, HardSwish not slow
    ({"mlp_hardswish": 1.5}, "d", "holds"),                       # the paper's iPhone 12 ranking
    ({"mlp_gelu": 1.5}, "d", "does not hold"),
])
def test_verdict_rules(changes, key, status):
    verdict = report.verdicts(_rows({**BASE, **changes}), observations())
    assert verdict[key][0] == status


@pytest.mark.parametrize("args, message", [
    (["--out", "x", "--runs", "10"], "error: --runs 10 is too few for a median; use >= 50"),
    (["--out", "x", "--lut-from", "missing.json"], "error: LUT file not found: missing.json"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-m", "android_ios_bench.analysis", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": root})
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in proc.stderr
