"""Export → measure → report for the Section 3 latency analysis, on the host or from a device LUT.

The micro-models travel through the same machinery as the LUT units: they are manifest items
(group "analysis", kind "analysis", key `analysis.<observation>.<variant>`), exported by
`android_ios_bench.export` through `deploy`, measured by the host harness (LiteRT + XNNPACK,
interleaved) or by the Android/iOS harnesses into a LUT, and the report is always built from a
LUT document. So a phone's numbers and the host's numbers go through identical code.
"""

from __future__ import annotations

import os

from android_ios_bench.analysis import report
from android_ios_bench.analysis.micro_models import REDUCED, SIZES, observations
from android_ios_bench.analysis.tflite_stats import describe_tflite, ops_from_text, ops_to_text
from android_ios_bench.lut import LUTError, load_lut, save_manifest

__all__ = ["AnalysisError", "BACKENDS", "analysis_key", "analysis_items", "export_analysis", "rows_from_lut",
           "run_analysis", "default_models_dir", "LUT_NAME"]

BACKENDS = ("tflite-host",)
LUT_NAME = "latency_analysis_lut.json"


class AnalysisError(LUTError):
    """Bad input to the latency analysis (one-line message saying what to do)."""


def _shape_text(shape) -> str:
    return "x".join(str(d) for d in shape)


def analysis_key(observation: str, variant: str, reduced: bool = False) -> str:
    return f"analysis{'-reduced' if reduced else ''}.{observation}.{variant}"


def analysis_items(reduced: bool = False):
    """The micro-models as `android_ios_bench.export.ManifestItem`s (group "analysis")."""
    from android_ios_bench.export import ManifestItem

    sizes = REDUCED if reduced else SIZES
    items = []
    for obs in observations():
        for v in obs.variants:
            shape = (1, *v.shape(sizes))
            unit = {"observation": obs.key, "variant": v.name, "sizes": "reduced" if reduced else "paper",
                    "input": _shape_text(shape)}
            items.append(ManifestItem(analysis_key(obs.key, v.name, reduced), "analysis", unit, shape,
                                      lambda v=v: v.build(sizes), group="analysis"))
    return items


def default_models_dir(reduced: bool, precision: str) -> str:
    """Exported micro-models are cached between runs (exports take minutes; timing takes seconds)."""
    cache = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    return os.path.join(cache, "ef_keras", "analysis_models", f"{'reduced' if reduced else 'paper'}_{precision}")


def export_analysis(models_dir: str, *, reduced: bool = False, tflite: bool = True, coreml: bool = False,
                    precision: str = "fp32", log=None) -> str:
    """Exports the micro-models (resumable) into `models_dir`; returns the manifest path.

    Each manifest entry's unit also records what the exported TFLite graph runs ("macs",
    "ops" census, "output" shape), so a LUT measured on a phone carries them into the report.
    """
    from android_ios_bench.export import MANIFEST_NAME, export_items
    from android_ios_bench.units import SearchSpace

    log = log or (lambda msg: None)
    items = analysis_items(reduced)
    manifest = export_items(items, models_dir, search_space=SearchSpace().to_dict(), tflite=tflite,
                            coreml=coreml, precision=precision,
                            progress=lambda d, n, k, s: log(f"[export {d}/{n}] {k} ({s:.1f}s)"))
    path = os.path.join(models_dir, MANIFEST_NAME)
    changed = False
    for entry in manifest["entries"]:
        if entry.get("group") == "analysis" and entry.get("tflite") and "macs" not in entry["unit"]:
            info = describe_tflite(os.path.join(models_dir, entry["tflite"]))
            entry["unit"].update(macs=info["macs"], ops=ops_to_text(info["ops"]),
                                 output=_shape_text(info["output_shape"]))
            changed = True
    if changed:
        save_manifest(manifest, path)
    return path


def _backend_text(doc: dict) -> str:
    rt, device = doc["runtime"], doc["device"]
    how = ", ".join(str(x) for x in (rt.get("delegate") or rt.get("compute_units"),
                                     rt.get("threads") and f"{rt['threads']} threads", rt["precision"]) if x)
    return f"{rt['name']} {rt.get('version', '')} ({how}) on {device['name']}".replace("  ", " ")


def rows_from_lut(doc: dict, *, reduced: bool = False, where: str = "LUT") -> tuple[list[dict], dict]:
    """The report rows and provenance of the analysis entries of a LUT document."""
    obs_list = observations()
    missing = [analysis_key(o.key, v.name, reduced) for o in obs_list for v in o.variants
               if analysis_key(o.key, v.name, reduced) not in doc["entries"]]
    if missing:
        raise AnalysisError(
            f"{where} lacks {len(missing)} of the analysis entries (e.g. {missing[0]!r}); measure the manifest "
            f"written by `python -m android_ios_bench.analysis --export-only{' --reduced' if reduced else ''}` "
            "with the host, Android or iOS harness into this LUT")
    rows = []
    for obs in obs_list:
        base = doc["entries"][analysis_key(obs.key, obs.baseline, reduced)]["median_ms"]
        for v in obs.variants:
            e = doc["entries"][analysis_key(obs.key, v.name, reduced)]
            rows.append({"observation": obs.key, "variant": v.name, "label": v.label,
                         "input_shape": e.get("input"), "output_shape": e.get("output"),
                         "mmacs": e["macs"] / 1e6 if "macs" in e else None,
                         "ops": ops_from_text(e["ops"]) if "ops" in e else None,
                         "median_ms": e["median_ms"], "p10_ms": e.get("p10_ms"), "p90_ms": e.get("p90_ms"),
                         "runs": e["runs"], "vs_baseline": e["median_ms"] / base if base else float("nan")})
    m = doc["measurement"]
    meta = {"backend": _backend_text(doc), "device": doc["device"].get("model", doc["device"]["name"]),
            "measured": m["date"], "tool": m["tool"], "warmup": m.get("warmup"), "runs per model": m["runs"],
            "order": m.get("order"), "sizes": "reduced (test)" if reduced else "paper (EfficientFormer-L1 shapes)"}
    if m.get("command"):
        meta["command"] = m["command"]
    return rows, {k: v for k, v in meta.items() if v is not None}


def run_analysis(out_dir: str, *, lut_from: str | None = None, backend: str = "tflite-host", reduced: bool = False,
                 models_dir: str | None = None, threads: int = 2, warmup: int = 20, runs: int = 200,
                 command: str | None = None, log=None) -> dict:
    """Runs the analysis and writes latency_analysis.{csv,md,png,json} into `out_dir`.

    Args:
      out_dir: output directory.
      lut_from: a LUT measured by any harness on the analysis manifest; when given nothing is
        measured here and `backend` is ignored.
      backend: "tflite-host": export (cached in `models_dir`) and time here with LiteRT/XNNPACK;
        the measurements go to out_dir/latency_analysis_lut.json (resumable: delete it to re-measure).
      reduced: tiny shapes (for tests), under their own keys.
      threads, warmup, runs: host timing protocol (all micro-models interleaved in one group).

    Returns:
      {"paths": {...}, "rows": [...], "verdicts": {key: (status, evidence)}, "lut": path}.
    """
    log = log or (lambda msg: None)
    if lut_from is None:
        if backend not in BACKENDS:
            raise AnalysisError(f"unknown backend {backend!r}; measure here with one of {BACKENDS}, or pass "
                                "--lut-from with a LUT a device harness measured")
        from android_ios_bench.host.harness import measure_manifest

        models_dir = models_dir or default_models_dir(reduced, "fp32")
        log(f"exporting the analysis micro-models into {models_dir} (cached)")
        manifest_path = export_analysis(models_dir, reduced=reduced, log=log)
        keys = [item.key for item in analysis_items(reduced)]
        lut_path = os.path.join(out_dir, LUT_NAME)
        todo = len(keys)
        if os.path.exists(lut_path):
            todo -= len(set(keys) & set(load_lut(lut_path)["entries"]))
            log(f"resuming {lut_path}: entries measured before are kept (delete the file to re-measure)")
        log(f"timing {todo} of {len(keys)} micro-models interleaved: {warmup} warm-up + {runs} timed runs each, "
            f"{threads} threads")
        os.makedirs(out_dir, exist_ok=True)
        doc = measure_manifest(manifest_path, lut_path, threads=threads, warmup=warmup, runs=runs,
                               keys=keys,  # one rotation of the analysis models
                               command=command or "android_ios_bench.analysis.run_analysis")
        where = lut_path
    else:
        doc, where = load_lut(lut_from), lut_from
        lut_path = lut_from
    rows, meta = rows_from_lut(doc, reduced=reduced, where=where)
    obs = observations()
    paths = report.write_outputs(rows, obs, meta, out_dir)
    return {"paths": paths, "rows": rows, "verdicts": report.verdicts(rows, obs), "lut": lut_path, "meta": meta}
