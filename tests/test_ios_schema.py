"""The iOS harness' Swift sources against the Python schemas, without running Swift: every JSON
key they decode or write must be a schema field, including the CoreML session header that only
runs on Apple's systems. (What Swift writes is validated for real in tests/test_ios_lut.py from the
committed Swift-written LUTs, and in tests/test_ios_swift.py by running the CLI.)"""

import json
import os
import re

from android_ios_bench import lut as L
from android_ios_bench.analysis import analysis_items
from android_ios_bench.export import export_items
from android_ios_bench.units import SearchSpace

IOS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "android_ios_bench", "ios")
CORE = os.path.join(IOS, "Sources", "EFBenchCore")


def swift(name):
    """A Swift source without its comment lines."""
    with open(os.path.join(CORE, name)) as f:
        return "\n".join(line for line in f.read().splitlines() if not line.lstrip().startswith("//"))


def schema(name):
    return L._schema(name)  # noqa: SLF001 (the shipped schema files)


def swift_properties(source, struct):
    """{property: optional?} of `public let` properties of a Swift struct (names are the JSON keys)."""
    body = re.search(rf"struct {struct}\b[^{{]*\{{(.*?)\n\}}", source, re.S).group(1)
    return {m.group(1): m.group(2) == "?" for m in re.finditer(r"public let (\w+): [^\n=]*?(\?)?\n", body + "\n")}


def test_swift_manifest_decoder_reads_only_schema_fields():
    source = swift("Manifest.swift")
    manifest_schema = schema("manifest.schema.json")
    entry_schema = manifest_schema["properties"]["entries"]["items"]
    for struct, sch in (("Manifest", manifest_schema), ("ManifestEntry", entry_schema)):
        props = swift_properties(source, struct)
        assert props, struct
        assert set(props) <= set(sch["properties"]), struct
        # a non-optional Swift property must be present in every valid manifest
        assert {p for p, optional in props.items() if not optional} <= set(sch["required"]), struct
        # optional Swift properties are the ones the schema lets be null or absent
        for p, optional in props.items():
            if optional:
                assert p not in sch["required"] or "null" in sch["properties"][p].get("type", [])


def test_swift_coreml_header_keys_are_schema_fields():
    """The provenance a CoreML session writes (SessionHeader.coreML, never run on Linux)."""
    source = swift("CoreMLBenchmark.swift")
    header = source[source.index("static func coreML("):]
    lut_schema = schema("lut.schema.json")
    for section in ("device", "runtime", "measurement"):
        written = set(re.findall(r'"([a-z_]+)": \.', re.search(rf"{section}: \[(.*?)\]", header, re.S).group(1)))
        properties = lut_schema["properties"][section]
        assert written <= set(properties["properties"]), section
        assert set(properties.get("required", [])) <= written, section


def test_python_export_writes_what_the_swift_side_reads(tmp_path):
    """A fresh export (deploy.to_coreml for real) yields a manifest with the fields Swift decodes."""
    item = next(i for i in analysis_items(reduced=True) if i.key.endswith("conv1x1_bn"))
    export_items([item], str(tmp_path), search_space=SearchSpace().to_dict(), tflite=False, coreml=True)
    manifest = L.load_manifest(tmp_path / "manifest.json", require_files="coreml")
    source = swift("Manifest.swift")
    for record, struct in ((manifest, "Manifest"), (manifest["entries"][0], "ManifestEntry")):
        required = {p for p, optional in swift_properties(source, struct).items() if not optional}
        assert required <= set(record), struct
    entry = manifest["entries"][0]
    assert entry["coreml"].endswith(".mlpackage") and os.path.isdir(tmp_path / entry["coreml"])
    assert entry["input_shape"] == list(item.input_shape)
    with open(os.path.join(IOS, "Fixtures", "analysis", "manifest.json")) as f:
        fixture = json.load(f)
    assert set(fixture) == set(L.load_manifest(tmp_path / "manifest.json")) - {"_dir"}
    assert set(fixture["entries"][0]) == set(entry)


def test_compute_unit_names_match_the_schema():
    cases = re.search(r"enum ComputeUnits: String, CaseIterable \{\s*case ([^\n]+)", swift("Device.swift")).group(1)
    enum = schema("lut.schema.json")["properties"]["runtime"]["properties"]["compute_units"]["enum"]
    assert [c.strip() for c in cases.split(",")] == [u for u in enum if u is not None]
