"""Host harness: times every manifest micro-model with the LiteRT interpreter (XNNPACK) into a LUT.

Protocol: models are measured in groups (bounded memory); within a group every model is
loaded, warmed up, then timed round-robin in a freshly shuffled order each round, so slow
drift (other processes, frequency changes) spreads over all models instead of biasing
whichever ran last. The work list itself is shuffled with a fixed seed, so each group mixes
unit kinds and sizes. Only `invoke()` is timed (perf_counter_ns); inputs are set once.
After every group the LUT is saved atomically, and re-running fills only missing keys.

Whole reference models in the manifest (kind "model", `export.reference_items`) are timed in
the same groups as the units and stored as the LUT's `reference_models`; once measured, the
predictor's correction is refitted on them (`predictor.refit_correction`).
"""

from __future__ import annotations

import os
import platform
import time
from typing import Callable, Sequence

import numpy as np

from android_ios_bench import __version__
from android_ios_bench.lut import (LUTError, identity, load_lut, load_manifest, make_entry, new_lut, now_iso,
                                   save_lut)
from android_ios_bench.predictor import refit_correction
from deploy.common import litert_interpreter
from ef_keras import provenance, timing
from ef_keras.checks import check_int
from ef_keras.output import check_output
from ef_keras.runs import check_same_settings

RUNTIME_NAME = "litert"
DELEGATE = "xnnpack"


def _litert_version() -> str:
    return provenance.package_versions(("ai-edge-litert",)).get("ai-edge-litert", "unknown")


def host_device() -> dict:
    """Provenance of this machine: a stable name plus the CPU model and OS."""
    return {"name": f"host-{platform.machine()}-{os.cpu_count()}cpu", "model": provenance.cpu_model(),
            "os": f"{platform.system()} {platform.release()}", "arch": platform.machine()}


def load_interpreter(path: str, threads: int, seed: int = 0):
    """A LiteRT interpreter (default op resolver = XNNPACK on) with random float inputs set."""
    Interpreter = litert_interpreter()

    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(seed)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], rng.standard_normal(detail["shape"]).astype(detail["dtype"]))
    return interpreter


def time_interleaved(paths: Sequence[str], *, threads: int = 2, warmup: int = 5, runs: int = 50,
                     seed: int = 0) -> list[np.ndarray]:
    """Per-model invoke() times in ms: all loaded, warmed up, then timed in a new random order per round
    (`ef_keras.timing.time_interleaved`)."""
    interpreters = [load_interpreter(p, threads, seed) for p in paths]
    times = timing.time_interleaved({i: it.invoke for i, it in enumerate(interpreters)}, runs, warmup, seed=seed)
    return [times[i] for i in range(len(paths))]


def measure_manifest(manifest_path: str, lut_out: str, *, threads: int = 2, precision: str | None = None,
                     warmup: int = 5, runs: int = 50, group_size: int = 12, seed: int = 0,
                     device: dict | None = None, command: str | None = None, keys: Sequence[str] | None = None,
                     progress: Callable[[int, int, str, dict], None] | None = None) -> dict:
    """Measures every manifest entry missing from `lut_out` and returns the complete LUT.

    Args:
        manifest_path: manifest.json written by android_ios_bench.export (tflite files required).
        lut_out: LUT to create or resume (entries already there are kept and not re-measured).
        threads: LiteRT CPU threads. precision: must match the manifest's (default: the manifest's).
        warmup, runs: untimed and timed invocations per model. group_size: models loaded at once.
        keys: measure only these manifest keys (default all).
        progress: called as progress(done, total, key, stats) after each measured model.
    """
    for name, value, low in (("runs", runs, 1), ("warmup", warmup, 0), ("threads", threads, 1),
                             ("group_size", group_size, 1)):
        check_int(name, value, low=low, error=LUTError)
    lut_out = check_output(lut_out, overwrite=True, suffix=".json", flag="--lut-out", error=LUTError)  # resumable
    manifest = load_manifest(manifest_path, require_files="tflite")
    precision = precision or manifest["precision"]
    if precision != manifest["precision"]:
        raise LUTError(f"{manifest_path} holds {manifest['precision']} models but --precision is {precision}; "
                       "export a manifest at that precision")
    fresh = new_lut(
        device=device or host_device(),
        runtime={"name": RUNTIME_NAME, "version": _litert_version(), "delegate": DELEGATE, "compute_units": None,
                 "threads": threads, "precision": precision},
        measurement={"tool": "android_ios_bench.host", "tool_version": __version__, "date": now_iso(),
                     "warmup": warmup, "runs": runs, "order": f"interleaved, shuffled per round, groups of {group_size}",
                     "command": command or "android_ios_bench.host.measure_manifest"},
        search_space=manifest["search_space"])
    if os.path.exists(lut_out):
        doc = load_lut(lut_out)
        check_same_settings(identity(doc), identity(fresh), where=lut_out, error=LUTError,
                            hint="use another --lut-out or the same settings")
    else:
        doc = fresh
    entries = [e for e in manifest["entries"] if keys is None or e["key"] in set(keys)]
    measured = set(doc["entries"]) | {f"model_{r['name']}" for r in doc.get("reference_models", [])}
    todo = [e for e in entries if e["key"] not in measured]
    np.random.default_rng(seed).shuffle(todo)
    done = len(entries) - len(todo)
    start = time.time()
    for g in range(0, len(todo), group_size):
        group = todo[g:g + group_size]
        paths = [os.path.join(manifest["_dir"], e["tflite"]) for e in group]
        times = time_interleaved(paths, threads=threads, warmup=warmup, runs=runs, seed=seed + g)
        for entry, t in zip(group, times):
            stats = timing.summarize(t)
            if entry["kind"] == "model":
                store_reference(doc, entry["unit"], stats)
            else:
                doc["entries"][entry["key"]] = make_entry(entry["kind"], entry["unit"], stats)
            done += 1
            if progress:
                progress(done, len(entries), entry["key"], stats)
        doc["measurement"]["date"] = now_iso()
        save_lut(doc, lut_out)
    if todo:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        doc["measurement"]["notes"] = (f"last run measured {len(todo)} models in {time.time() - start:.0f}s, "
                                       f"1-min load average at the end {load:.2f}")
    if doc.get("reference_models"):
        refit_correction(doc)
    save_lut(doc, lut_out)
    return doc


def store_reference(doc: dict, unit: dict, stats: dict) -> None:
    """Records a whole reference model's timing in the LUT (replacing an older record of that name)."""
    refs = [r for r in doc.setdefault("reference_models", []) if r["name"] != unit["name"]]
    refs.append({"name": unit["name"], "config": unit["config"],
                 **{k: stats[k] for k in ("median_ms", "p10_ms", "min_ms", "runs") if k in stats}})
    doc["reference_models"] = sorted(refs, key=lambda r: r["name"])
