from android_ios_bench import lut as L
from android_ios_bench.units import SearchSpace, search_space_units
def synthetic_lut(max_widths):
    """A complete, schema-valid LUT of the space up to `max_widths`; ms = unit multiply-adds / 1e7."""
    space = SearchSpace(max_widths=tuple(max_widths))
    doc = L.new_lut(device={"name": "synthetic"}, runtime={"name": "litert", "precision": "fp32"},
                    measurement={"tool": "tests", "date": L.now_iso(), "runs": 1}, search_space=space.to_dict())
    for u in search_space_units(space):
        f, hw = u.unit, u.unit["res"] ** 2
        macs = {"stem": hw / 16 * 9 * 3 * f["cout"] * 1.5, "meta4d": hw * 8 * f["cin"] ** 2,
                "downsample": hw / 4 * 9 * f["cin"] * f["cout"], "flat": hw * f["cin"] / 2,
                "meta3d": hw * (2560 * f["cin"] + 8 * f["cin"] ** 2) + 1280 * hw * hw,
                "head": hw * f["cin"] + 2 * f["cin"] * f["cout"]}[u.kind]
        doc["entries"][u.key] = L.make_entry(u.kind, u.unit, {"median_ms": macs / 1e7 + 0.01, "runs": 1})
    L.validate_lut(doc)
    return doc


