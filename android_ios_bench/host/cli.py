"""`python -m android_ios_bench.host`: export (if needed) + measure, as one library call `build_lut`."""

from __future__ import annotations

import os
import sys
import time

from android_ios_bench.lut import LUTError
from android_ios_bench.units import METHODS, ROTATION_METHOD, SearchSpace, V2SearchSpace
from ef_keras.errors import require_tensorflow_backend

MIN_RUNS = 50
DEFAULT_RUNS = 200


def default_models_dir(space, precision: str) -> str:
    """Where exported micro-models are cached between runs (one directory per space and precision; a
    method that needs more models, "in_context", adds them there)."""
    cache = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    if isinstance(space, V2SearchSpace):
        name = f"v2_s{space.input_size}_w{'-'.join(str(w[-1]) for w in space.widths)}_{precision}"
    else:
        lo, hi = ("-".join(str(w) for w in ws) for ws in (space.min_widths, space.max_widths))
        name = f"s{space.input_size}_w{lo}_to_{hi}_n{'-'.join(space.named) or 'none'}_{precision}"
    return os.path.join(cache, "ef_keras", "lut_models", name)


def build_lut(lut_out: str, *, manifest: str | None = None, space: SearchSpace = SearchSpace(),
              models_dir: str | None = None, threads: int = 2, precision: str = "fp32", method: str = ROTATION_METHOD,
              warmup: int = 5, runs: int = DEFAULT_RUNS, group_size: int | None = None, command: str | None = None,
              log=None) -> dict:
    """Exports the search space's micro-models unless `manifest` is given, then measures them into `lut_out`."""
    from android_ios_bench.export import MANIFEST_NAME, export_search_space
    from android_ios_bench.host.harness import DEFAULT_GROUP_SIZE, measure_manifest

    require_tensorflow_backend("the LUT harness (TFLite export)")
    log = log or (lambda msg: None)
    if manifest is None:
        models_dir = models_dir or default_models_dir(space, precision)
        log(f"exporting micro-models into {models_dir} (resumable)")
        start = time.time()
        export_search_space(models_dir, space, method, precision=precision,
                            progress=lambda d, n, k, s: (d == n or d % 25 == 0) and log(
                                f"[export {d}/{n}] {k} {time.time() - start:.0f}s"))
        manifest = os.path.join(models_dir, MANIFEST_NAME)
    start = time.time()

    def progress(done, total, key, stats):
        if done == total or done % 25 == 0:
            log(f"[measure {done}/{total}] {key}: median {stats['median_ms']:.3f} ms "
                f"(p10 {stats['p10_ms']:.3f}, p90 {stats['p90_ms']:.3f}) {time.time() - start:.0f}s")
    return measure_manifest(manifest, lut_out, threads=threads, precision=precision, method=method, warmup=warmup,
                            runs=runs, group_size=DEFAULT_GROUP_SIZE if group_size is None else group_size,
                            command=command,
                            progress=progress, log=log)


def check_lut(lut_path: str, *, models_dir: str | None = None, warmup: int = 5, runs: int = MIN_RUNS,
              extra: dict[str, str] | None = None, log=None) -> dict:
    """Re-times the LUT's reference models on this host now: how far is today from the LUT's session?

    Returns {"scale": {statistic: median ratio now/then}, "models": [...], "extra": {...}}: a
    prediction from this LUT times `scale` is today's latency. `extra` ({name: .tflite path})
    are timed interleaved with the reference models in the same run (their stats in "extra").
    LUTError when the LUT has no reference models or was measured on another device
    (re-time a phone's LUT with its own harness).
    """
    import hashlib
    import json

    from android_ios_bench.export import export_items, model_item
    from android_ios_bench.host.harness import host_device, time_interleaved
    from ef_keras.timing import summarize
    from android_ios_bench.lut import load_lut
    from android_ios_bench.predictor import drift_scale
    log = log or (lambda msg: None)
    doc = load_lut(lut_path)
    refs = doc.get("reference_models") or []
    if not refs:
        raise LUTError(f"{lut_path} records no reference models, so its drift cannot be measured; re-measure it "
                       "with `python -m android_ios_bench.host --lut-out LUT` (it records L1, L3 and random models)")
    here = host_device()["name"]
    if doc["device"]["name"] != here:
        raise LUTError(f"{lut_path} was measured on {doc['device']['name']}, this host is {here}: re-time a phone's "
                       "LUT on the phone, with its harness")
    space = doc["search_space"]
    size = space["input_size"]

    cache = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    digest = hashlib.sha256(json.dumps(space, sort_keys=True).encode()).hexdigest()[:12]  # one cache per space
    models_dir = models_dir or os.path.join(cache, "ef_keras", "lut_reference_models", f"s{size}_{digest}")
    log(f"exporting {len(refs)} reference models into {models_dir} (cached)")
    manifest = export_items([model_item(r["name"], r["config"], space) for r in refs], models_dir, search_space=space,
                            precision=doc["runtime"]["precision"])
    by_key = {e["key"]: e for e in manifest["entries"]}
    paths = [os.path.join(models_dir, by_key[f"model_{r['name']}"]["tflite"]) for r in refs]
    log(f"timing them interleaved, {runs} rounds, {doc['runtime']['threads']} threads")
    extra = extra or {}
    timed = [summarize(t) for t in time_interleaved(paths + list(extra.values()), threads=doc["runtime"]["threads"],
                                                    warmup=warmup, runs=runs)]
    now = timed[:len(paths)]
    result = {"lut": lut_path, "lut_date": doc["measurement"]["date"], "scale": {}, "models": [],
              "extra": dict(zip(extra, timed[len(paths):]))}
    for statistic in ("median_ms", "p10_ms", "min_ms"):
        if all(statistic in r for r in refs):
            result["scale"][statistic], _ = drift_scale(doc, {r["name"]: n[statistic] for r, n in zip(refs, now)},
                                                        statistic)
    for r, n in zip(refs, now):
        result["models"].append({"name": r["name"], "then_median_ms": r["median_ms"], "now_median_ms": n["median_ms"],
                                 "then_p10_ms": r.get("p10_ms"), "now_p10_ms": n["p10_ms"]})
    return result


def define_flags():
    """Defines this tool's flags (called by `run`, so importing the module defines none)."""
    from absl import flags

    from android_ios_bench.export import define_space_flags

    flags.DEFINE_string("lut-out", None, "LUT JSON to write (resumed if it exists)")
    flags.DEFINE_string("check-lut", None, "re-time this LUT's reference models now and print how far this host "
                                           "is from the LUT's session (drift scale); measures no units")
    flags.DEFINE_string("manifest", None, "manifest.json from android_ios_bench.export (default: export the "
                                          "search space into --models-dir first)")
    flags.DEFINE_string("models-dir", None, "where to export micro-models (default ~/.cache/ef_keras/lut_models/...)")
    flags.DEFINE_integer("threads", 2, "LiteRT CPU threads", lower_bound=1)
    flags.DEFINE_enum("precision", "fp32", ["fp32", "fp16", "int8"], "precision of the micro-models")
    flags.DEFINE_integer("warmup", 5, "untimed invocations per model", lower_bound=0)
    flags.DEFINE_integer("runs", DEFAULT_RUNS, f"timed invocations per model (>= {MIN_RUNS})")
    flags.DEFINE_integer("group-size", 0, "models per rotation, loaded and interleaved at once (0: every model in "
                         "one rotation: the default V1 space needs about 11 GB)", lower_bound=0)
    flags.DEFINE_enum("method", ROTATION_METHOD, list(METHODS), "in_rotation: each unit alone, every model in one "
                      "rotation; in_context: (context unit + unit) - (context unit); isolated: each unit alone in "
                      "rotations of --group-size models")
    define_space_flags()  # --family, --input-size, --min-widths, --max-widths (without --manifest)


def main(argv):
    """Measures a LUT (--lut-out) or re-times a LUT's reference models (--check-lut)."""
    from absl import flags

    from android_ios_bench.export import space_from_flags
    from ef_keras.errors import InputError

    F = flags.FLAGS
    if F["check-lut"].value:
        print_drift(check_lut(F["check-lut"].value, models_dir=F["models-dir"].value, warmup=F.warmup,
                              runs=F.runs, log=lambda m: print(m, file=sys.stderr, flush=True)))
        return
    if not F["lut-out"].value:
        raise InputError("give --lut-out LUT (measure a LUT) or --check-lut LUT (measure its drift)")
    if F.runs < MIN_RUNS:
        raise InputError(f"--runs must be >= {MIN_RUNS} (got {F.runs})")
    out = F["lut-out"].value
    doc = build_lut(out, manifest=F.manifest, space=space_from_flags(), models_dir=F["models-dir"].value,
                    threads=F.threads, precision=F.precision, method=F.method, warmup=F.warmup, runs=F.runs,
                    group_size=F["group-size"].value, command=" ".join(["python -m android_ios_bench.host"]
                                                                      + sys.argv[1:]),
                    log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"wrote {out} ({len(doc['entries'])} entries)")


def run():
    """Console entry point (`ef-lut`, `python -m android_ios_bench.host`)."""
    from ef_keras.cli import run as run_cli

    define_flags()
    run_cli(main, user_errors=(LUTError,))

def print_drift(result: dict) -> None:
    """The drift table of `check_lut` and its one-line verdict."""
    print(f"| model | LUT session median ms ({result['lut_date']}) | now median ms | ratio | LUT p10 ms | now p10 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for m in result["models"]:
        p10 = f"{m['then_p10_ms']:.3f}" if m["then_p10_ms"] is not None else "-"
        print(f"| {m['name']} | {m['then_median_ms']:.3f} | {m['now_median_ms']:.3f} | "
              f"{m['now_median_ms'] / m['then_median_ms']:.3f} | {p10} | {m['now_p10_ms']:.3f} |")
    scales = ", ".join(f"x{v:.3f} ({k})" for k, v in result["scale"].items())
    print(f"this host now runs at {scales} of the LUT's session: multiply its predictions by that, or pass "
          "--check-drift to search.slim to take the target in today's milliseconds")
