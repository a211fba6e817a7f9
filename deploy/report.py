"""The conversion report: a JSON file next to the converted model and a short printed table.

Besides size, precision and the verification diffs, the report carries the op census and
the count of layout ops (reshape / transpose / gather). The paper's central design rule is
dimension consistency: one 4D -> 3D switch and no reshape churn around attention. The
budget checked here is at most 1 + 7 x (number of 3D blocks) RESHAPE+TRANSPOSE ops in the
TFLite graph (8 for L1).
"""

from __future__ import annotations

import datetime

from ef_keras.output import write_json

#: Op names per target that count as layout ops (TFLite builtins, MIL ops, ONNX node types).
LAYOUT_OPS = {
    "tflite": {"reshape": ("RESHAPE",), "transpose": ("TRANSPOSE",), "gather": ("GATHER", "GATHER_ND")},
    "coreml": {"reshape": ("reshape",), "transpose": ("transpose",), "gather": ("gather", "gather_nd",
                                                                                  "gather_along_axis")},
    "onnx": {"reshape": ("Reshape",), "transpose": ("Transpose",), "gather": ("Gather", "GatherND",
                                                                               "GatherElements")},
}


def report_path(out_path: str) -> str:
    return out_path + ".report.json"


def layout_counts(target: str, census: dict) -> dict:
    """{"reshape": n, "transpose": n, "gather": n} for a target's op census."""
    return {kind: sum(census.get(op, 0) for op in ops) for kind, ops in LAYOUT_OPS[target].items()}


def num_3d_blocks(model) -> int | None:
    """The number of 3D MetaBlocks (attention) of an EfficientFormer (V1); None for other models.

    The dimension-consistency budget is V1's design (one 4D->3D switch); EfficientFormerV2
    stays 4D throughout and reshapes inside every attention block, so it has no such budget.
    """
    from ef_keras.models.efficientformer.config import EfficientFormerConfig

    config = getattr(model, "config", None)
    return config.num_vit if isinstance(config, EfficientFormerConfig) else None


def reshape_transpose_budget(num_vit: int) -> int:
    """The dimension-consistency budget of RESHAPE+TRANSPOSE ops: one Flat + 7 per 3D block."""
    return 1 + 7 * num_vit


def build(*, target, path, model, spec, precision, census, size, verification, extra=None) -> dict:
    """Assembles the report dict for one conversion."""
    layout = layout_counts(target, census)
    num_vit = num_3d_blocks(model)
    budget = None
    if num_vit is not None and target == "tflite":  # the issue's budget is defined on the TFLite graph
        limit = reshape_transpose_budget(num_vit)
        used = layout["reshape"] + layout["transpose"]
        budget = {"num_3d_blocks": num_vit, "limit": limit, "reshape_transpose": used, "within": used <= limit}
    return {
        "target": target,
        "path": path,
        "model": model.name,
        "architecture": model.config.to_dict() if getattr(model, "config", None) is not None else None,
        "input": {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype},
        "precision": precision,
        "size_bytes": int(size),
        "op_count": int(sum(census.values())),
        "op_census": census,
        "reshape_transpose_gather": layout,
        "dimension_consistency_budget": budget,
        "verification": verification,
        **(extra or {}),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def census_delta(before: dict, after: dict) -> dict:
    """{op: count in `before` − count in `after`} for every op whose count changed (removed > 0, added < 0)."""
    return {op: before.get(op, 0) - after.get(op, 0) for op in sorted(set(before) | set(after))
            if before.get(op, 0) != after.get(op, 0)}


def write(report: dict, path: str) -> None:
    write_json(path, report)


def format_table(report: dict) -> str:
    """A short human-readable summary of a report (what the CLI prints)."""
    v = report["verification"]
    layout = report["reshape_transpose_gather"]
    rows = [
        ("output", report["path"]),
        ("target / precision", f"{report['target']} / {report['precision']}"),
        ("size", f"{report['size_bytes'] / 1e6:.2f} MB"),
        ("ops", f"{report['op_count']} ({', '.join(f'{k} {n}' for k, n in _top(report['op_census']))}, ...)"),
        ("reshape / transpose / gather", f"{layout['reshape']} / {layout['transpose']} / {layout['gather']}"),
    ]
    budget = report.get("dimension_consistency_budget")
    if budget:
        rows.append(("reshape+transpose budget", f"{budget['reshape_transpose']} <= {budget['limit']}: "
                                                 f"{'ok' if budget['within'] else 'EXCEEDED'}"))
    if v.get("verified"):
        top1 = "n/a" if v["top1_agreement"] is None else f"{v['top1_agreement']:.0%}"
        rows.append(("verified vs Keras", f"max|diff| {v['max_abs_diff']:.2e} (rel {v['max_rel_diff']:.2e}), "
                                          f"cosine {v['cosine']:.5f}, top-1 {top1} [{v.get('evaluator', report['target'])}]"))
    else:
        rows.append(("verified vs Keras", "skipped (NaN check only)"))
    if "xnnpack" in report:
        x = report["xnnpack"]
        rows.append(("XNNPACK", f"{x['partitions']} partition(s), fully delegated: {x['fully_delegated']}"))
        if report.get("xnnpack_reference_ops"):
            rows.append(("on reference kernels", _counts(report["xnnpack_reference_ops"])))
    if report.get("precision") == "int8" and report.get("op_census_by_dtype"):
        by_dtype = report["op_census_by_dtype"]
        rows.append(("int8 / float ops", " / ".join(str(sum(by_dtype.get(t, {}).values())) for t in ("int8", "float32"))
                     + f" (float: {_counts(by_dtype.get('float32', {}))})"))
    graph = report.get("export_graph")
    if graph and graph.get("scales"):
        removed = graph.get("ops_removed") or {}
        left = sum(len(names) for names in graph["left_unfolded"].values())
        rows.append(("layer scales folded", f"{graph['folded']} of {graph['scales']}; ops removed: "
                                            f"{_counts(removed) if removed else 'none'}"
                     + (f"; {left} not folded ({'; '.join(graph['left_unfolded'])})" if left else "")))
    if graph and graph.get("rewritten"):
        rows.append(("export graph vs model", f"{'GELU ' + graph['gelu'] + ', ' if 'gelu' in graph else ''}float "
                                              f"max|diff| {graph['float_max_abs_diff']:.2e} "
                                              f"(rel {graph['float_max_rel_diff']:.2e})"))
    if report.get("latency_ms") is not None:
        rows.append(("host latency (median / p10)", f"{report['latency_ms']:.2f} / {report['latency_p10_ms']:.2f} ms"))
    r = report.get("roofline")
    if r:
        rows.append(("roofline share (median)", f"{r['share_median']:.0%}: {r['model_gflop']:.2f} G / "
                                                f"{r['model_median_ms']:.2f} ms = {r['achieved_median']:.0f} {r['unit']} "
                                                f"of the probe's {r['probe_median']:.0f} ({r['probe']})"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {val}" for k, val in rows)


def delegation_warning(report: dict) -> str | None:
    """One line when a full-integer TFLite model is not one XNNPACK partition (None otherwise)."""
    x = report.get("xnnpack")
    if report.get("precision") != "int8" or not x or x["fully_delegated"]:
        return None
    left = report.get("xnnpack_reference_ops") or {}
    return (f"the int8 model is not fully delegated to XNNPACK ({x['partitions']} partitions); on the reference "
            f"kernels: {_counts(left) if left else 'none, but the graph is split'}")


def _counts(census: dict) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(census.items(), key=lambda kv: -kv[1]))


def _top(census: dict, n: int = 4):
    return sorted(census.items(), key=lambda kv: -kv[1])[:n]


__all__ = ["report_path", "layout_counts", "reshape_transpose_budget", "build", "census_delta", "write",
           "format_table", "delegation_warning"]
