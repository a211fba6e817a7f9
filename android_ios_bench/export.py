"""Micro-model export: every unit of a search space -> .tflite / .mlpackage + manifest.json.

    python -m android_ios_bench.export --out /tmp/lut_models [--coreml] [--min-widths 32,64,128,256]
        [--max-widths 64,128,256,512] [--method in_rotation|in_context|isolated]

The manifest is the input of all harnesses (host, Android, iOS). Conversion goes through
`deploy.to_tflite` / `deploy.to_coreml`, the converters the full models use, so a unit is
timed in the exact form it has inside a deployed model. Exporting is resumable: the manifest
is rewritten atomically after every unit and units whose files exist are skipped. Other tools
(the latency analysis) add their own micro-models to a manifest through `export_items`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Callable, Iterable

from android_ios_bench import __version__
from android_ios_bench.lut import (LUTError, ManifestError, MANIFEST_FORMAT, FORMAT_VERSION, load_manifest,
                                   now_iso, save_manifest)
from android_ios_bench.units import (CONTEXT_METHOD, METHODS, ROTATION_METHOD, SearchSpace, Unit, V2SearchSpace,
                                     build_unit, context_key, context_unit, search_space_units)
from deploy.common import PRECISIONS
from ef_keras.output import run_directory
from ef_keras.runs import check_same_settings

MANIFEST_NAME = "manifest.json"


@dataclasses.dataclass(frozen=True)
class ManifestItem:
    """One micro-model to export: its LUT key, kind, unit fields, a model factory and a group."""

    key: str
    kind: str
    unit: dict[str, Any]
    input_shape: tuple[int, ...]
    build: Callable[[], Any]
    group: str = "lut"


def lut_items(space, method: str = ROTATION_METHOD) -> list[ManifestItem]:
    """The search space's units as manifest items: each unit alone, and for `method="in_context"`
    also each unit after its context unit (kind "context", key `units.context_key`).

    A context item's `unit` holds the measured unit's kind and fields and its context's key, so a
    harness can turn "context + unit" minus "context" into the unit's LUT entry.
    """
    if method not in METHODS:
        raise LUTError(f"method must be one of {METHODS}, got {method!r}")

    def item(u: Unit) -> ManifestItem:
        return ManifestItem(u.key, u.kind, u.unit, u.input_shape, lambda: build_unit(u))

    def in_context(u: Unit, ctx: Unit) -> ManifestItem:
        return ManifestItem(context_key(u), "context", {"kind": u.kind, "fields": u.unit, "context": ctx.key},
                            ctx.input_shape, lambda: build_unit(u, ctx))

    units = search_space_units(space)
    items = [item(u) for u in units]
    if method == CONTEXT_METHOD:
        items += [in_context(u, ctx) for u in units if (ctx := context_unit(u, space)) is not None]
    return items


def model_item(name: str, config, space: dict, group: str = "reference") -> ManifestItem:
    """A whole model (an architecture config of either family, or its dict) as a manifest item of kind "model"."""
    from ef_keras.registry import architecture, build_model

    cfg = architecture(config)
    size = space["input_size"]
    return ManifestItem(f"model_{name}", "model", {"name": name, "config": cfg.to_dict()}, (1, size, size, 3),
                        lambda: build_model(cfg, input_shape=(size, size, 3), classes=space["classes"]),
                        group=group)


def reference_items(space, **kwargs) -> list[ManifestItem]:
    """The search space's reference models (`android_ios_bench.reference.reference_configs`, whose keyword
    arguments `kwargs` are) as whole-model items.

    Harnesses time them with the units, so the LUT carries whole-model latencies from the
    same session: the correction is fitted on them and `--check-lut` re-times them.
    """
    from android_ios_bench.reference import reference_configs

    return [model_item(name, cfg, space.to_dict()) for name, cfg in reference_configs(space.to_dict(), **kwargs)]


def _empty_manifest(search_space: dict, precision: str) -> dict:
    return {"format": MANIFEST_FORMAT, "version": FORMAT_VERSION, "created": now_iso(), "tool_version": __version__,
            "precision": precision, "search_space": search_space, "entries": []}


def open_manifest(out_dir: str, search_space: dict, precision: str) -> dict:
    """The manifest in `out_dir` (to resume into), or a new one; refuses a different space/precision."""
    path = os.path.join(out_dir, MANIFEST_NAME)
    if not os.path.exists(path):
        return _empty_manifest(search_space, precision)
    doc = load_manifest(path)
    check_same_settings({"precision": doc["precision"], "search_space": doc["search_space"]},
                        {"precision": precision, "search_space": search_space}, where=path, error=ManifestError,
                        hint="use another --out directory or the same settings")
    return doc


def export_items(items: Iterable[ManifestItem], out_dir: str, *, search_space: dict, tflite: bool = True,
                 coreml: bool = False, precision: str = "fp32", verify: bool = False,
                 progress: Callable[[int, int, str, float], None] | None = None) -> dict:
    """Exports every item not already exported into `out_dir` and returns the manifest.

    Files go to out_dir/tflite/<key>.tflite and out_dir/coreml/<key>.mlpackage (paths in the
    manifest are relative to out_dir). `progress(done, total, key, seconds)` is called per item.
    """
    import deploy
    import keras

    if precision not in PRECISIONS:
        raise LUTError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not (tflite or coreml):
        raise LUTError("nothing to export: enable tflite and/or coreml")
    with run_directory(out_dir):  # a failed first export leaves no empty directory behind
        path = os.path.join(out_dir, MANIFEST_NAME)
        manifest = open_manifest(out_dir, search_space, precision)
        manifest.pop("_dir", None)
        by_key = {e["key"]: e for e in manifest["entries"]}
        items = list(items)
        for done, item in enumerate(items, start=1):
            entry = by_key.get(item.key) or {"key": item.key, "kind": item.kind, "unit": dict(item.unit),
                                             "input_shape": list(item.input_shape), "input_dtype": "float32",
                                             "tflite": None, "coreml": None, "group": item.group}
            todo = [fmt for fmt, on in (("tflite", tflite), ("coreml", coreml))
                    if on and not (entry[fmt] and os.path.exists(os.path.join(out_dir, entry[fmt])))]
            start = time.perf_counter()
            if todo:
                model = item.build()
                for fmt in todo:
                    rel = os.path.join(fmt, item.key + (".tflite" if fmt == "tflite" else ".mlpackage"))
                    os.makedirs(os.path.join(out_dir, fmt), exist_ok=True)
                    convert = deploy.to_tflite if fmt == "tflite" else deploy.to_coreml
                    convert(model, os.path.join(out_dir, rel), precision=precision, verify=verify, overwrite=True,
                            measure=False)
                    entry[fmt] = rel
                if item.key not in by_key:
                    manifest["entries"].append(entry)
                    by_key[item.key] = entry
                save_manifest(manifest, path)
                del model
                keras.backend.clear_session()
            if progress:
                progress(done, len(items), item.key, time.perf_counter() - start)
        if not os.path.exists(path):
            save_manifest(manifest, path)
        return load_manifest(path)


def export_search_space(out_dir: str, space=SearchSpace(), method: str = ROTATION_METHOD,
                        **kwargs) -> dict:
    """Exports every LUT unit of `space` (alone, and in context for `method="in_context"`) and its
    reference models (see export_items for the keyword arguments)."""
    return export_items(lut_items(space, method) + reference_items(space), out_dir, search_space=space.to_dict(),
                        **kwargs)


def print_progress(done: int, total: int, key: str, seconds: float) -> None:
    """Periodic one-line progress for long exports."""
    if done == total or done % 10 == 0 or seconds > 5:
        print(f"[export {done}/{total}] {key} ({seconds:.1f}s)", file=sys.stderr, flush=True)


def define_space_flags():
    """The search-space flags this tool and the host harness share (`space_from_flags` reads them)."""
    from absl import flags

    flags.DEFINE_enum("family", "v1", ["v1", "v2"], "model family whose units to export or measure: v1 "
                      "(EfficientFormer) or v2 (EfficientFormerV2, its widths fixed by V2SearchSpace)")
    flags.DEFINE_integer("input-size", 224, "model input size (stage resolutions are size/4 .. size/32)",
                         lower_bound=32)
    flags.DEFINE_list("min-widths", [str(w) for w in SearchSpace().min_widths], "search min width per stage (v1)")
    flags.DEFINE_list("max-widths", [str(w) for w in SearchSpace().max_widths],
                      "search (supernet) max width per stage (v1)")


def space_from_flags():
    """The SearchSpace / V2SearchSpace the flags of `define_space_flags` describe."""
    from absl import flags

    from ef_keras.checks import parse_int_list
    F = flags.FLAGS
    if F.family == "v2":
        return V2SearchSpace(input_size=F["input-size"].value)
    return SearchSpace(input_size=F["input-size"].value,
                       min_widths=parse_int_list("--min-widths", F["min-widths"].value),
                       max_widths=parse_int_list("--max-widths", F["max-widths"].value))


def main(argv):
    """Exports the search space's micro-models and writes their manifest."""
    from absl import flags

    F = flags.FLAGS
    del argv
    manifest = export_search_space(F.out, space_from_flags(), F.method, tflite=F.tflite, coreml=F.coreml,
                                   precision=F.precision, verify=F.verify, progress=print_progress)
    print(f"wrote {os.path.join(F.out, MANIFEST_NAME)} ({len(manifest['entries'])} micro-models)")


def define_flags():
    """Defines this tool's flags (called by `run`, so importing the module defines none)."""
    from absl import flags

    flags.DEFINE_string("out", None, "output directory (manifest.json, tflite/, coreml/)", required=True)
    flags.DEFINE_bool("tflite", True, "export .tflite files")
    flags.DEFINE_bool("coreml", False, "export .mlpackage files (CoreML, iOS16)")
    flags.DEFINE_enum("precision", "fp32", list(PRECISIONS), "weights/compute precision of the exported models")
    define_space_flags()
    flags.DEFINE_enum("method", ROTATION_METHOD, list(METHODS), "in_context: also export every unit after its "
                      "context unit; in_rotation (the host harness') and isolated (phone harnesses): units alone")
    flags.DEFINE_bool("verify", False, "let deploy compare every micro-model's outputs with Keras (slower)")


def run():
    """CLI entry (`python -m android_ios_bench.export`): flags -> export_search_space, one-line errors."""
    from ef_keras.cli import run as run_cli

    define_flags()
    run_cli(main, user_errors=(LUTError,))


if __name__ == "__main__":
    run()
