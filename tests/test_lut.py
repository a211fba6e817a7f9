"""LUT and manifest documents: keys, schema validation, merge, atomic save, coverage checks, units."""

import copy
import json
import os

import numpy as np
import pytest

from android_ios_bench import lut as L
from android_ios_bench.units import SearchSpace, Unit, build_unit, search_space_units

SPACE = SearchSpace(input_size=64, max_widths=(32, 32, 48, 64), downsample_points=2)


def make_lut(space=SPACE, threads=2, runs=50, scale=1.0):
    doc = L.new_lut(device={"name": "test-device"},
                    runtime={"name": "litert", "delegate": "xnnpack", "threads": threads, "precision": "fp32"},
                    measurement={"tool": "test", "date": "2026-01-01T00:00:00Z", "runs": runs},
                    search_space=space.to_dict())
    for u in search_space_units(space):
        doc["entries"][u.key] = L.make_entry(u.kind, u.unit, {"median_ms": scale * u.unit["cin"], "runs": runs})
    return doc


def test_unit_keys_are_canonical_and_reject_unknown_kinds():
    assert L.unit_key("meta4d", cin=96, res=56, mlp_ratio=4, pool_size=3) == "meta4d_c96_r56_m4_p3"
    assert L.unit_key("downsample", cin=96, cout=192, res=56) == "downsample_c96-192_r56"
    with pytest.raises(L.LUTError, match="unknown unit kind 'conv'"):
        L.unit_key("conv", cin=1)
    with pytest.raises(L.LUTError, match="needs field 'res'"):
        L.unit_key("flat", cin=8)


def test_search_space_units_cover_every_width_and_grid_endpoints():
    space = SearchSpace()
    assert space.resolutions == (56, 28, 14, 7) and space.meta3d_resolutions == (14, 7)
    units = search_space_units(space)
    keys = [u.key for u in units]
    assert len(keys) == len(set(keys))
    meta4d = [u for u in units if u.kind == "meta4d"]
    assert len(meta4d) == sum(w // 16 for w in space.max_widths)
    for t, grid in enumerate(space.downsample_grids(), start=1):
        assert grid["cin"][0] == 16 and grid["cin"][-1] == space.max_widths[t - 1]
        assert grid["cout"][0] == 16 and grid["cout"][-1] == space.max_widths[t]
        assert all(w % 16 == 0 for w in grid["cin"] + grid["cout"])
    with pytest.raises(L.LUTError, match="multiple of 32"):
        SearchSpace(input_size=100)


def test_valid_lut_round_trips_through_atomic_save(tmp_path):
    doc = make_lut()
    path = tmp_path / "lut.json"
    L.save_lut(doc, path)
    assert L.load_lut(path) == doc
    assert os.listdir(tmp_path) == ["lut.json"]  # no temp file left behind


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("entries"), "'entries' is a required property"),
    (lambda d: d["runtime"].update(precision="fp64"), "runtime/precision"),
    (lambda d: next(iter(d["entries"].values())).pop("median_ms"), "'median_ms' is a required property"),
    (lambda d: next(iter(d["entries"].values())).pop("res"), "'res' is a required property"),
    (lambda d: d["entries"].update(x=dict(next(iter(d["entries"].values())))), "keys must be built with"),
    (lambda d: d.update(version=2), "version"),
])
def test_schema_errors_are_one_line_and_name_the_field(tmp_path, mutate, message):
    doc = make_lut()
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(L.LUTSchemaError, match=message) as info:
        L.load_lut(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_unreadable_lut_files_give_clear_errors(tmp_path):
    with pytest.raises(L.LUTError, match="LUT file not found"):
        L.load_lut(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(L.LUTSchemaError, match="not valid JSON"):
        L.load_lut(tmp_path / "junk.json")


def test_merge_unions_partial_luts_and_prefers_more_runs():
    full = make_lut()
    keys = sorted(full["entries"])
    a, b = copy.deepcopy(full), make_lut(runs=80, scale=2.0)
    a["entries"] = {k: full["entries"][k] for k in keys[: len(keys) // 2]}
    b["entries"] = {k: b["entries"][k] for k in keys[len(keys) // 3:]}
    b["measurement"]["date"] = "2026-02-01T00:00:00Z"
    merged = L.merge_luts([a, b])
    assert sorted(merged["entries"]) == keys
    first, overlap = keys[0], keys[len(keys) // 2 - 1]
    assert merged["entries"][first] == full["entries"][first]
    assert merged["entries"][overlap]["runs"] == 80
    assert merged["measurement"]["date"] == "2026-02-01T00:00:00Z"
    L.validate_lut(merged)


def test_merge_refuses_other_runtime_or_search_space():
    with pytest.raises(L.LUTError, match="runtime.threads"):
        L.merge_luts([make_lut(), make_lut(threads=4)])
    with pytest.raises(L.LUTError, match="differs from LUT #1 in search_space.downsample_grids, search_space.max"):
        L.merge_luts([make_lut(), make_lut(space=SearchSpace(input_size=64, max_widths=(32, 32, 48, 48)))])


def test_check_search_space_refuses_other_resolution_or_wider_space():
    doc = make_lut()
    L.check_search_space(doc, input_size=64, max_widths=(32, 32, 48, 64))
    with pytest.raises(L.LUTCoverageError, match="64x64 inputs, not 224x224"):
        L.check_search_space(doc, input_size=224)
    with pytest.raises(L.LUTCoverageError, match=r"stage\(s\) \[4\]"):
        L.check_search_space(doc, max_widths=(32, 32, 48, 128))


def _manifest(tmp_path, files=True):
    entries = []
    for u in search_space_units(SPACE)[:3]:
        rel = f"tflite/{u.key}.tflite"
        if files:
            (tmp_path / "tflite").mkdir(exist_ok=True)
            (tmp_path / rel).write_bytes(b"x")
        entries.append({"key": u.key, "kind": u.kind, "unit": u.unit, "input_shape": list(u.input_shape),
                        "input_dtype": "float32", "tflite": rel, "coreml": None, "group": "lut"})
    return {"format": L.MANIFEST_FORMAT, "version": 1, "created": L.now_iso(), "precision": "fp32",
            "search_space": SPACE.to_dict(), "entries": entries}


def test_manifest_round_trip_and_missing_files(tmp_path):
    path = tmp_path / "manifest.json"
    L.save_manifest(_manifest(tmp_path), path)
    doc = L.load_manifest(path, require_files="tflite")
    assert doc["_dir"] == str(tmp_path) and len(doc["entries"]) == 3
    os.remove(tmp_path / doc["entries"][1]["tflite"])
    with pytest.raises(L.ManifestError, match=f"entry '{doc['entries'][1]['key']}' names .* does not exist"):
        L.load_manifest(path, require_files="tflite")
    with pytest.raises(L.ManifestError, match="has no coreml file"):
        L.load_manifest(path, require_files="coreml")


def test_manifest_schema_rejects_duplicates_and_bad_search_space(tmp_path):
    doc = _manifest(tmp_path, files=False)
    doc["entries"].append(doc["entries"][0])
    with pytest.raises(L.LUTSchemaError, match="appears twice"):
        L.validate_manifest(doc)
    doc = _manifest(tmp_path, files=False)
    doc["search_space"]["input_size"] = 100
    with pytest.raises(L.LUTSchemaError, match="search_space/input_size"):
        L.validate_manifest(doc)


def test_schemas_ship_as_package_data():
    from importlib import resources
    for name in ("lut.schema.json", "manifest.schema.json"):
        schema = json.loads(resources.files("android_ios_bench").joinpath("schema", name).read_text())
        assert schema["$schema"].endswith("2020-12/schema")


@pytest.mark.parametrize("kind", ["stem", "downsample", "meta4d", "flat", "meta3d", "head"])
def test_build_unit_runs_with_the_unit_input_and_output_shapes(kind):
    unit = next(u for u in search_space_units(SPACE) if u.kind == kind)
    model = build_unit(unit)
    assert tuple(model.input.shape) == unit.input_shape
    out = model(np.zeros(unit.input_shape, "float32"))
    u = unit.unit
    expected = {"stem": (1, 16, 16, u["cout"]), "downsample": (1, u["res"] // 2, u["res"] // 2, u["cout"]),
                "meta4d": unit.input_shape, "flat": (1, u["res"] ** 2, u["cin"]), "meta3d": unit.input_shape,
                "head": (1, u["cout"])}[kind]
    assert tuple(out.shape) == expected


def test_unit_fields_make_the_key():
    unit = Unit.make("meta3d", cin=64, cout=64, res=7, tokens=49, mlp_ratio=4, key_dim=32, num_heads=8, attn_ratio=4)
    assert unit.key == "meta3d_c64_r7_m4_k32_h8_a4" and unit.input_shape == (1, 49, 64)


def test_nan_in_a_lut_file_is_refused_naming_the_file(tmp_path):
    doc = L.load_default_lut()
    path = tmp_path / "nan.json"
    text = json.dumps(doc).replace(str(next(iter(doc["entries"].values()))["median_ms"]), "NaN", 1)
    path.write_text(text)
    with pytest.raises(L.LUTError, match=f"{path}.*NaN is not a latency"):
        L.load_lut(str(path))
