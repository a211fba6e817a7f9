"""The latency lookup table (LUT) and the micro-model manifest: keys, validation, merge, atomic I/O.

A LUT is one JSON document per (device, runtime, precision): provenance plus one entry per
measured unit (stem, downsample, 4D/3D MetaBlock, flatten, head) with median/p10/p90 latency.
The host, Android and iOS harnesses write it; `android_ios_bench.predictor.predict` reads it. A manifest lists
the exported micro-models a harness measures. Both formats are JSON Schemas shipped in
`android_ios_bench/schema/` (the Swift harness reads the same files).

Loading imports no TensorFlow/Keras, so the search can read LUTs cheaply (writing uses ef_keras.output).
"""

from __future__ import annotations

import datetime
import functools
import json
import os
from importlib import resources
from typing import Any, Iterable


LUT_FORMAT = "ef-keras-latency-lut"
MANIFEST_FORMAT = "ef-keras-latency-manifest"
FORMAT_VERSION = 1
#: The six unit kinds the predictor sums (other kinds, e.g. the analysis tool's, may coexist).
CORE_KINDS = ("stem", "downsample", "meta4d", "flat", "meta3d", "head")
#: EfficientFormerV2's unit kinds (a V2 LUT, `search_space.family == "v2"`).
V2_KINDS = ("v2_stem", "v2_downsample", "v2_attn_downsample", "v2_ffn", "v2_attn_ffn", "v2_head")
DEFAULT_LUT_NAME = "host_x86_2core_fp32.json"
#: The embedded EfficientFormerV2 LUT (same host and runtime, V2's units).
DEFAULT_V2_LUT_NAME = "host_x86_2core_fp32_v2.json"
#: Fields that must agree for two LUT documents to be merged.
_IDENTITY_RUNTIME = ("name", "delegate", "compute_units", "threads", "precision")
#: `measurement.method` of a LUT written before methods were recorded: its units were timed alone.
LEGACY_METHOD = "isolated"


class LUTError(ValueError):
    """A LUT or manifest problem, with a one-line message saying what to do."""


class LUTSchemaError(LUTError):
    """The document does not follow the LUT/manifest JSON Schema."""


class LUTCoverageError(LUTError):
    """The LUT does not cover the search space, resolution or unit that was asked for."""


class ManifestError(LUTError):
    """A manifest is invalid or names a model file that is not there."""


# ----------------------------------------------------------------------------- keys
def unit_key(kind: str, /, **f: Any) -> str:
    """The canonical LUT key of a unit, e.g. unit_key("meta4d", cin=96, res=56, mlp_ratio=4, pool_size=3).

    Every writer and reader builds keys here, so they never drift apart.
    """
    try:
        if kind == "stem":
            return f"stem_c{f['cout']}_r{f['res']}"
        if kind == "downsample":
            return f"downsample_c{f['cin']}-{f['cout']}_r{f['res']}"
        if kind == "meta4d":
            return f"meta4d_c{f['cin']}_r{f['res']}_m{f['mlp_ratio']}_p{f['pool_size']}"
        if kind == "flat":
            return f"flat_c{f['cin']}_r{f['res']}"
        if kind == "meta3d":
            return (f"meta3d_c{f['cin']}_r{f['res']}_m{f['mlp_ratio']}_k{f['key_dim']}"
                    f"_h{f['num_heads']}_a{f['attn_ratio']}")
        if kind == "head":
            return f"head_c{f['cin']}_r{f['res']}_n{f['cout']}"
        if kind in ("v2_stem", "v2_downsample"):
            return f"{kind}_c{f['cin']}-{f['cout']}_r{f['res']}"
        if kind == "v2_attn_downsample":
            return f"{kind}_c{f['cin']}-{f['cout']}_r{f['res']}_k{f['key_dim']}_h{f['num_heads']}_a{f['attn_ratio']}"
        if kind == "v2_ffn":
            return f"{kind}_c{f['cin']}_r{f['res']}_m{f['mlp_ratio']}"
        if kind == "v2_attn_ffn":
            return (f"{kind}_c{f['cin']}_r{f['res']}_t{f['tokens']}_m{f['mlp_ratio']}_k{f['key_dim']}"
                    f"_h{f['num_heads']}_a{f['attn_ratio']}")
        if kind == "v2_head":
            return f"{kind}_c{f['cin']}_r{f['res']}_n{f['cout']}"
    except KeyError as e:
        raise LUTError(f"unit_key({kind!r}) needs field {e.args[0]!r}; got {sorted(f)}") from e
    raise LUTError(f"unknown unit kind {kind!r}; known kinds: {', '.join(CORE_KINDS + V2_KINDS)}")


def make_entry(kind: str, unit: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    """One LUT entry: the unit's kind and fields plus its timing statistics."""
    return {"kind": kind, **unit, **stats}


# ----------------------------------------------------------------------------- schema
@functools.lru_cache(maxsize=None)
def _schema(name: str) -> dict:
    return json.loads(resources.files("android_ios_bench").joinpath("schema", name).read_text())


@functools.lru_cache(maxsize=None)
def _validator(name: str):
    try:  # imported here, not at the top: the core install has no jsonschema (it is in the search extra)
        import jsonschema
        import referencing
    except ModuleNotFoundError as e:
        from ef_keras.errors import require  # ef_keras (TensorFlow) only on this error path

        require(e.name, "search", "checking a LUT or manifest against its schema")  # raises MissingExtraError
        raise
    lut, manifest = _schema("lut.schema.json"), _schema("manifest.schema.json")
    registry = referencing.Registry().with_resources(
        [(s["$id"], referencing.Resource.from_contents(s)) for s in (lut, manifest)])
    schema = lut if name == "lut" else manifest
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _check(doc: Any, name: str, where: str) -> None:
    if not isinstance(doc, dict):
        raise LUTSchemaError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    validator = _validator(name)
    from jsonschema.exceptions import best_match  # importable: _validator imported jsonschema

    error = best_match(validator.iter_errors(doc))
    if error is not None:
        path = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        what = "LUT" if name == "lut" else "manifest"
        raise LUTSchemaError(f"{where}: not a valid {what} at {path}: {error.message}")


def validate_lut(doc: Any, where: str = "LUT") -> None:
    """Raises LUTSchemaError (one line: file, field, problem) unless `doc` follows lut.schema.json."""
    _check(doc, "lut", where)
    fit = doc.get("correction")
    if fit and "fitted_on" in fit and len(fit["fitted_on"]) <= len(fit["coefficients"]):
        raise LUTSchemaError(f"{where}: its {fit['form']} correction has {len(fit['coefficients'])} parameters but "
                             f"was fitted on {len(fit['fitted_on'])} models; a fit needs more models than "
                             "parameters (refit it: android_ios_bench.refit.refit_correction)")
    for key, entry in doc["entries"].items():
        if entry["kind"] in CORE_KINDS:
            expected = unit_key(entry["kind"], **entry)
            if key != expected:
                raise LUTSchemaError(f"{where}: entry {key!r} describes unit {expected!r}; "
                                     "keys must be built with android_ios_bench.lut.unit_key")


def validate_manifest(doc: Any, where: str = "manifest") -> None:
    """Raises LUTSchemaError unless `doc` follows manifest.schema.json and its keys are unique."""
    _check(doc, "manifest", where)
    seen = set()
    for entry in doc["entries"]:
        if entry["key"] in seen:
            raise LUTSchemaError(f"{where}: key {entry['key']!r} appears twice")
        seen.add(entry["key"])


# ----------------------------------------------------------------------------- I/O
def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a latency")


def read_json(path: str, what: str) -> Any:
    """A JSON document of this package (`what` names it in errors): LUTError when missing, unreadable or not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, parse_constant=_refuse_constant)  # NaN / Infinity are not JSON numbers
    except FileNotFoundError as e:
        raise LUTError(f"{what} file not found: {path}") from e
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise LUTSchemaError(f"{path}: not valid JSON for a {what} ({e}); re-measure or restore the file") from e
    except OSError as e:
        raise LUTError(f"cannot read {what} {path}: {e.strerror}") from e


def _write_json(path: str, doc: Any) -> None:
    """`ef_keras.output.write_json` (atomic: temp file beside `path`, renamed), creating the directory.

    Imported here, not at the top: loading a LUT must stay free of TensorFlow, writing one need not.
    """
    from ef_keras.output import write_json

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_json(path, doc)


def load_lut(source: str | os.PathLike | dict) -> dict:
    """Loads and validates a LUT from a path or an already-parsed dict."""
    if isinstance(source, dict):
        validate_lut(source)
        return source
    doc = read_json(os.fspath(source), "LUT")
    validate_lut(doc, where=os.fspath(source))
    return doc


def save_lut(doc: dict, path: str | os.PathLike) -> None:
    """Validates then writes atomically."""
    validate_lut(doc, where=os.fspath(path))
    _write_json(os.fspath(path), doc)


def default_lut_path(family: str = "v1") -> str:
    """The embedded default LUT of a model family (host x86, 2 threads, fp32 LiteRT/XNNPACK)."""
    name = {"v1": DEFAULT_LUT_NAME, "v2": DEFAULT_V2_LUT_NAME}[family]
    return str(resources.files("android_ios_bench").joinpath("luts", name))


def load_default_lut(family: str = "v1") -> dict:
    return load_lut(default_lut_path(family))


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def new_lut(*, device: dict, runtime: dict, measurement: dict, search_space: dict) -> dict:
    """An empty LUT document with its provenance filled in."""
    return {"format": LUT_FORMAT, "version": FORMAT_VERSION, "device": dict(device), "runtime": dict(runtime),
            "measurement": dict(measurement), "search_space": dict(search_space), "entries": {}}


def method_of(doc: dict) -> str:
    """How the LUT's units were timed: "in_rotation", "in_context" or "isolated" (`android_ios_bench.units`)."""
    return doc["measurement"].get("method", LEGACY_METHOD)


def identity(doc: dict) -> dict:
    """What makes two LUTs' timings one table: device, runtime settings, method and search space.

    Merging partial LUTs and resuming a measurement into an existing LUT both require equal
    identities (the harnesses compare them with `ef_keras.runs.check_same_settings`).
    """
    return {"device": {"name": doc["device"].get("name")},
            "runtime": {k: doc["runtime"].get(k) for k in _IDENTITY_RUNTIME},
            "measurement": {"method": method_of(doc)}, "search_space": doc["search_space"]}


def session_id(doc: dict) -> str:
    """A short digest naming the LUT's measuring session (identity and date).

    Files measured against a LUT in its session (the Δ-latency validation) record it, so they
    are never applied to another LUT.
    """
    import hashlib

    session = identity(doc)
    del session["measurement"]  # one session's timings give a LUT of either method
    blob = json.dumps({"identity": session, "date": doc["measurement"]["date"]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def merge_luts(docs: Iterable[dict]) -> dict:
    """Union of the entries of several partial LUTs of the same device/runtime/search space.

    Where two documents measured the same key (or reference model), the one with more timed runs
    wins (ties: the later document). The provenance is the first document's, with the latest date.
    """
    docs = [load_lut(d) for d in docs]
    if not docs:
        raise LUTError("merge_luts needs at least one LUT")
    first = docs[0]
    merged = json.loads(json.dumps(first))
    refs = {r["name"]: r for r in merged.get("reference_models", [])}
    for i, doc in enumerate(docs[1:], start=2):
        if identity(doc) != identity(first):
            from ef_keras.runs import changed_settings  # only here: reading LUTs stays free of TensorFlow

            diff = changed_settings(identity(first), identity(doc))
            raise LUTError(f"cannot merge LUT #{i}: it differs from LUT #1 in {', '.join(diff)} "
                           "(merge only partial tables of one device/runtime/precision/search space)")
        for key, entry in doc["entries"].items():
            old = merged["entries"].get(key)
            if old is None or entry["runs"] >= old["runs"]:
                merged["entries"][key] = entry
        for ref in doc.get("reference_models", []):
            old = refs.get(ref["name"])
            if old is None or ref.get("runs", 0) >= old.get("runs", 0):
                refs[ref["name"]] = ref
        merged["measurement"]["date"] = max(merged["measurement"]["date"], doc["measurement"]["date"])
    if refs:
        merged["reference_models"] = [refs[name] for name in sorted(refs)]
    return merged


# ----------------------------------------------------------------------------- manifest
def load_manifest(path: str | os.PathLike, require_files: str | None = None) -> dict:
    """Loads and validates a manifest; `require_files` ("tflite"/"coreml") checks those files exist.

    The returned dict carries `"_dir"`: the manifest's directory, against which file paths resolve.
    """
    path = os.fspath(path)
    doc = read_json(path, "manifest")
    validate_manifest(doc, where=path)
    base = os.path.dirname(os.path.abspath(path))
    if require_files:
        for entry in doc["entries"]:
            rel = entry.get(require_files)
            if rel is None:
                raise ManifestError(f"{path}: entry {entry['key']!r} has no {require_files} file; "
                                    f"re-export with --{require_files}")
            if not os.path.exists(os.path.join(base, rel)):
                raise ManifestError(f"{path}: entry {entry['key']!r} names {rel}, which does not exist; "
                                    "re-run android_ios_bench.export into that directory")
    doc["_dir"] = base
    return doc


def save_manifest(doc: dict, path: str | os.PathLike) -> None:
    """Validates then writes atomically (the in-memory `_dir` is not stored)."""
    doc = {k: v for k, v in doc.items() if k != "_dir"}
    validate_manifest(doc, where=os.fspath(path))
    _write_json(os.fspath(path), doc)
