"""LUT and manifest documents: keys, schema validation, merge, atomic save, coverage checks, units."""

import copy
import json
import os

import numpy as np
import pytest

from android_ios_bench import lut as L
from android_ios_bench import predictor as P
from android_ios_bench.units import SearchSpace, Unit, build_unit, context_unit, search_space_units

SPACE = SearchSpace(input_size=64, min_widths=(16, 16, 16, 32), max_widths=(32, 32, 48, 64), named=())


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


def test_default_space_is_the_search_grid_plus_the_named_variants():
    """The grid agreed with the search: 32..64 / 64..128 / 128..256 / 256..512 step 16 at 56/28/14/7,
    every downsampling pair of neighbouring stages' grids, plus L1/L3/L7's own widths and pairs."""
    space = SearchSpace()
    assert space.resolutions == (56, 28, 14, 7) and space.meta3d_resolutions == (7,)
    assert [space.search_widths(s) for s in range(4)] == [
        [32, 48, 64], [64, 80, 96, 112, 128], list(range(128, 257, 16)), list(range(256, 513, 16))]
    assert [space.widths(s)[-1] for s in range(4)] == [96, 192, 384, 768]  # L7's widths, outside the grid
    units = search_space_units(space)
    keys = [u.key for u in units]
    assert len(keys) == len(set(keys))
    downsample = {(u.unit["cin"], u.unit["cout"], u.unit["res"]) for u in units if u.kind == "downsample"}
    assert len(downsample) == 3 * 5 + 5 * 9 + 9 * 17 + 5  # full grids + 5 named pairs outside them
    assert {(48, 96, 56), (128, 320, 28), (384, 768, 14), (320, 512, 14)} <= downsample
    assert {u.kind for u in units if u.unit["res"] == 14 and u.kind != "downsample"} == {"meta4d"}  # 3D: stage 4 only
    assert space.to_dict()["downsample_grids"][2]["pairs"] == [[320, 512], [384, 768]]
    with pytest.raises(L.LUTError, match="multiple of 32"):
        SearchSpace(input_size=100)
    with pytest.raises(L.LUTError, match=r"min widths \[32, 64, 128, 256\] exceed max widths"):
        SearchSpace(max_widths=(32, 32, 128, 256))


def test_context_units_are_the_block_the_unit_reads_from():
    space = SearchSpace()
    by_key = {u.key: u for u in search_space_units(space)}
    ctx = lambda key: context_unit(by_key[key], space).key  # noqa: E731
    assert context_unit(by_key["stem_c48_r224"], space) is None
    assert ctx("downsample_c48-96_r56") == "meta4d_c48_r56_m4_p3"
    assert ctx("meta4d_c96_r28_m4_p3") == "meta4d_c96_r28_m4_p3"
    assert ctx("flat_c448_r7") == "meta4d_c448_r7_m4_p3"
    assert ctx("head_c448_r7_n1000") == ctx("meta3d_c448_r7_m4_k32_h8_a4") == "meta3d_c448_r7_m4_k32_h8_a4"
    assert all(context_unit(u, space) is None or context_unit(u, space).key in by_key for u in by_key.values())


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
    narrower = SearchSpace(input_size=64, min_widths=(16, 16, 16, 32), max_widths=(32, 32, 48, 48), named=())
    with pytest.raises(L.LUTError, match="differs from LUT #1 in search_space.downsample_grids, search_space.max"):
        L.merge_luts([make_lut(), make_lut(space=narrower)])
    other = make_lut()
    other["measurement"]["method"] = "isolated"
    with pytest.raises(L.LUTError, match="measurement.method"):
        L.merge_luts([dict(make_lut(), measurement=dict(make_lut()["measurement"], method="in_context")), other])


def test_check_search_space_refuses_other_resolution_method_or_grid():
    doc = make_lut()
    P.check_search_space(doc, input_size=64, max_widths=(32, 32, 48, 64))
    P.check_search_space(doc, min_widths=(32, 32, 32, 48), max_widths=(32, 32, 48, 64), width_step=16)
    with pytest.raises(L.LUTCoverageError, match="64x64 inputs, not 224x224"):
        P.check_search_space(doc, input_size=224)
    with pytest.raises(L.LUTCoverageError, match="measured by method 'isolated', not 'in_context'"):
        P.check_search_space(doc, method="in_context")  # no method recorded: units timed alone
    with pytest.raises(L.LUTCoverageError, match=r"does not cover the search grid \[16, 16, 16, 32\]..\[32, 32, 48, "
                                                 r"128\] step 16: meta4d width 80 at 2x2 \(meta4d_c80_r2_m4_p3\) is "
                                                 r"not measured; meta4d at 2x2 is measured at widths 32..64 step 16"):
        P.check_search_space(doc, max_widths=(32, 32, 48, 128))


def test_a_missing_downsample_pair_is_refused_naming_it_and_the_grid():
    """A LUT measured at every width but one downsampling pair: the search's coverage check and an exact
    prediction refuse it, naming the pair and what the LUT measured there."""
    from android_ios_bench.predictor import predict
    from ef_keras import EfficientFormerConfig

    doc = make_lut()
    del doc["entries"]["downsample_c32-48_r8"]
    with pytest.raises(L.LUTCoverageError, match=r"downsample 32->48 at 8x8 \(downsample_c32-48_r8\) is not "
                                                 r"measured; downsample at 8x8 is measured for cin \[16, 32\] x "
                                                 r"cout 16..48 step 16 \(5 pairs, not a full grid\)"):
        P.check_search_space(doc, max_widths=(32, 32, 48, 64))
    config = EfficientFormerConfig(widths=(16, 32, 48, 64), depths=(1, 1, 1, 1), num_vit=1)
    with pytest.raises(L.LUTCoverageError, match=r"does not cover downsample 32->48 at 8x8: downsample at 8x8"):
        predict(config, doc, input_size=64, exact=True)
    with pytest.raises(L.LUTCoverageError, match=r"cannot interpolate downsample 32->48 at 8x8: the grid lacks"):
        predict(config, doc, input_size=64)  # its neighbours (32, 32) and (32, 64): no (32, 64) at 8x8 either


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
