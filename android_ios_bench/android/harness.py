"""Android harness: every manifest .tflite -> `adb push` -> TFLite `benchmark_model` -> LUT entry.

The user supplies TensorFlow Lite's `benchmark_model` binary for the phone's ABI (built with
bazel or one of the prebuilt nightly binaries). For each model the harness pushes the file,
runs the tool once per round (`--warmup_runs`, `--num_runs`, threads or a GPU/NNAPI delegate),
keeps the raw console output as a record next to the LUT, parses it (`parse.py`) and saves the
LUT atomically. Models run in a shuffled order, and with `rounds > 1` every model is benchmarked
again in each round, so drift (thermal throttling) spreads over all models. Re-running resumes:
finished entries are kept, and so are the recorded rounds of an unfinished one.

Statistics: `benchmark_model` prints aggregates only. The median is the tool's own median
when it prints one (recent versions: "p5=… median=… p95=…"), otherwise its mean, marked
`"median_source": "avg"`; p10/p90 are not printed by the tool and are left out rather than
invented. With several rounds the entry's median is the median of the rounds' medians.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import statistics
from typing import Callable, Sequence

import numpy as np

from android_ios_bench import __version__
from android_ios_bench.android.adb import Adb, AndroidError
from android_ios_bench.android.parse import BenchmarkModelResult, BenchmarkOutputError, parse_benchmark_output
from android_ios_bench.host.harness import store_reference
from android_ios_bench.lut import (LUTError, identity, load_lut, load_manifest, make_entry, new_lut, now_iso,
                                   save_lut)
from android_ios_bench.refit import refit_correction
from android_ios_bench.units import ISOLATED_METHOD
from ef_keras.checks import check_int
from ef_keras.output import write_json, write_text
from ef_keras.runs import check_same_settings

__all__ = ["AndroidSettings", "stats_from_results", "benchmark_args", "measure_manifest_android", "RUNTIME_NAME"]

RUNTIME_NAME = "tflite-benchmark_model"
REMOTE_DIR = "/data/local/tmp/ef_bench"


@dataclasses.dataclass(frozen=True)
class AndroidSettings:
    """How `benchmark_model` is run for every model."""

    threads: int = 4
    use_gpu: bool = False
    use_nnapi: bool = False
    warmup_runs: int = 10
    num_runs: int = 100
    rounds: int = 1
    extra_args: tuple[str, ...] = ()

    def __post_init__(self):
        if self.use_gpu and self.use_nnapi:
            raise AndroidError("choose one delegate: --use-gpu or --use-nnapi, not both")
        for name, low in (("threads", 1), ("num_runs", 1), ("warmup_runs", 0), ("rounds", 1)):
            check_int(name, getattr(self, name), low=low, error=AndroidError)

    @property
    def delegate(self) -> str | None:
        return "gpu" if self.use_gpu else "nnapi" if self.use_nnapi else None


def benchmark_args(settings: AndroidSettings, binary: str, graph: str) -> str:
    """The device shell command for one model (a fixed minimum duration is switched off with
    --min_secs=0 so that --num_runs is what is timed; warm-up likewise)."""
    args = [binary, f"--graph={graph}", f"--num_threads={settings.threads}", f"--warmup_runs={settings.warmup_runs}",
            "--warmup_min_secs=0", f"--num_runs={settings.num_runs}", "--min_secs=0"]
    if settings.use_gpu:
        args.append("--use_gpu=true")
    if settings.use_nnapi:
        args.append("--use_nnapi=true")
    args += settings.extra_args
    return " ".join(shlex.quote(a) for a in args)


def stats_from_results(results: Sequence[BenchmarkModelResult]) -> dict:
    """LUT statistics (ms) from one or more parsed runs of one model (see module doc)."""
    if not results:
        raise AndroidError("no benchmark_model results to summarise")
    inf = [r.inference for r in results]
    has_median = all(s.has_percentiles for s in inf)
    centers = [(s.median_us if has_median else s.avg_us) / 1e3 for s in inf]
    counts = np.array([s.count for s in inf], dtype=float)
    means = np.array([s.avg_us for s in inf]) / 1e3
    stds = np.array([s.std_us for s in inf]) / 1e3
    total = counts.sum()
    mean = float((counts * means).sum() / total)
    # exact pooled population std from the per-run population stds and means
    std = float(np.sqrt(max((counts * (stds ** 2 + means ** 2)).sum() / total - mean ** 2, 0.0)))
    stats = {"median_ms": float(statistics.median(centers)), "mean_ms": mean,
             "min_ms": float(min(s.min_us for s in inf)) / 1e3, "max_ms": float(max(s.max_us for s in inf)) / 1e3,
             "std_ms": std, "runs": int(total)}
    notes = []
    if not has_median:
        stats["median_source"] = "avg"
        notes.append("this benchmark_model prints no median: median_ms is its mean")
    else:
        p5 = min(s.p5_us for s in inf) / 1e3
        p95 = max(s.p95_us for s in inf) / 1e3
        notes.append(f"benchmark_model p5 {p5:.4g} ms, p95 {p95:.4g} ms")
    if len(results) > 1:
        notes.append(f"median of {len(results)} rounds")
    delegation = {name: state for r in results for name, state in r.delegation}
    for name, state in delegation.items():
        if state != "complete":
            notes.append(f"{name} delegate {'not used' if state == 'none' else 'partial, ' + state.split(':')[1] + ' kernels'}")
    stats["note"] = "; ".join(notes)
    return stats


def _device_info(adb: Adb) -> dict:
    manufacturer, model = adb.getprop("ro.product.manufacturer"), adb.getprop("ro.product.model")
    name = "-".join(p for p in ("android", manufacturer, model) if p).lower().replace(" ", "_")
    return {"name": name, "model": f"{manufacturer} {model} ({adb.getprop('ro.board.platform') or 'unknown SoC'})",
            "os": f"Android {adb.getprop('ro.build.version.release')} (SDK {adb.getprop('ro.build.version.sdk')})",
            "arch": adb.getprop("ro.product.cpu.abi")}


def _run_one(device: Adb, settings: AndroidSettings, remote_bin: str, manifest: dict, entry: dict, record: str,
             lut_out: str, saved: int) -> BenchmarkModelResult:
    """Pushes one model, runs benchmark_model on it, keeps the raw output, returns it parsed."""
    key = entry["key"]
    remote_model = f"{REMOTE_DIR}/{os.path.basename(entry['tflite'])}"
    device.push(os.path.join(manifest["_dir"], entry["tflite"]), remote_model)
    status, output = device.shell(benchmark_args(settings, remote_bin, remote_model))
    try:
        result = parse_benchmark_output(output, source=f"benchmark_model output for {key}")
    except BenchmarkOutputError as e:
        failed = os.path.join(os.path.dirname(record), f"{key}.failed.txt")
        write_text(failed, output)
        raise AndroidError(f"{e} (exit status {status}; raw output kept in {failed}; "
                           f"{saved} entries already saved in {lut_out})") from e
    write_text(record, output)
    return result


def measure_manifest_android(manifest_path: str, benchmark_binary: str, lut_out: str, *,
                             settings: AndroidSettings = AndroidSettings(), serial: str | None = None,
                             adb: str | None = None, keys: Sequence[str] | None = None, seed: int = 0,
                             command: str | None = None,
                             progress: Callable[[int, int, str, dict], None] | None = None) -> dict:
    """Measures every manifest entry missing from `lut_out` on an attached phone; returns the LUT.

    Raw `benchmark_model` outputs are kept in `<lut_out>.records/<key>.round<i>.txt` (a failed
    run's in `<key>.failed.txt`); the LUT is saved after every model, so an interruption or a
    failing model loses nothing measured before it.
    """
    if not os.path.isfile(benchmark_binary):
        raise AndroidError(f"benchmark binary not found: {benchmark_binary}; build TensorFlow Lite's "
                           "benchmark_model for the phone's ABI (e.g. bazel --config=android_arm64) or download it")
    manifest = load_manifest(manifest_path, require_files="tflite")
    # units alone (method "isolated"): the in-context micro-models of a host manifest are skipped
    entries = [e for e in manifest["entries"] if e["kind"] != "context" and (keys is None or e["key"] in set(keys))]
    device = Adb(serial, adb)
    runtime = {"name": RUNTIME_NAME, "delegate": settings.delegate, "compute_units": None,
               "threads": None if settings.use_gpu else settings.threads, "precision": manifest["precision"]}
    fresh = new_lut(
        device=_device_info(device), runtime=runtime,
        measurement={"tool": "android_ios_bench.android", "tool_version": __version__, "date": now_iso(),
                     "method": ISOLATED_METHOD, "warmup": settings.warmup_runs,
                     "runs": settings.num_runs * settings.rounds,
                     "order": f"shuffled, {settings.rounds} round(s), one benchmark_model process per model and round",
                     "command": command or "android_ios_bench.android.measure_manifest_android"},
        search_space=manifest["search_space"])
    if os.path.exists(lut_out):
        doc = load_lut(lut_out)
        check_same_settings(identity(doc), identity(fresh), where=lut_out, error=LUTError,
                            hint="use another --lut-out or the same settings")
    else:
        doc = fresh
    records = f"{lut_out}.records"
    os.makedirs(records, exist_ok=True)
    write_json(os.path.join(records, "settings.json"), {
        "benchmark_binary": os.path.abspath(benchmark_binary), "settings": dataclasses.asdict(settings),
        "device": fresh["device"]})
    remote_bin = f"{REMOTE_DIR}/benchmark_model"
    device.shell(f"mkdir -p {REMOTE_DIR}")
    device.push(benchmark_binary, remote_bin)
    device.shell(f"chmod 755 {remote_bin}")

    measured = set(doc["entries"]) | {f"model_{r['name']}" for r in doc.get("reference_models", [])}
    todo = [e for e in entries if e["key"] not in measured]
    np.random.default_rng(seed).shuffle(todo)
    results: dict[str, list[BenchmarkModelResult]] = {e["key"]: [] for e in todo}
    done = len(entries) - len(todo)
    for rnd in range(settings.rounds):
        for entry in todo:
            key = entry["key"]
            record = os.path.join(records, f"{key}.round{rnd}.txt")
            if os.path.exists(record):  # recorded by an interrupted earlier run
                with open(record) as f:
                    result = parse_benchmark_output(f.read(), source=record)
            else:
                result = _run_one(device, settings, remote_bin, manifest, entry, record, lut_out, len(doc["entries"]))
            results[key].append(result)
            if rnd == settings.rounds - 1:
                stats = stats_from_results(results[key])
                if entry["kind"] == "model":  # a whole reference model (export.reference_items)
                    store_reference(doc, entry["unit"], stats)
                else:
                    doc["entries"][key] = make_entry(entry["kind"], entry["unit"], stats)
                doc["measurement"]["date"] = now_iso()
                save_lut(doc, lut_out)
                done += 1
                if progress:
                    progress(done, len(entries), key, stats)
    if doc.get("reference_models"):
        refit_correction(doc)
    save_lut(doc, lut_out)
    return doc
