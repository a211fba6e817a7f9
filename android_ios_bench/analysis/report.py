"""Tables, verdicts and the Figure-2-style chart of the Section 3 latency analysis.

A *row* is one measured micro-model: {observation, variant, label, input_shape, output_shape,
mmacs, ops, median_ms, p10_ms, p90_ms, runs, vs_baseline}. The verdicts compare medians with a
tie margin: differences within ±`MARGIN` are not called either way, because medians of one
model on a shared 2-core VM move by more than that between runs (facts file §8.5).
"""

from __future__ import annotations

import csv
import io
import os

from android_ios_bench.analysis.tflite_stats import ops_to_text
from ef_keras.errors import require
from ef_keras.output import check_run_directory, write_json, write_text, writing

__all__ = ["MARGIN", "COLUMNS", "verdicts", "write_csv", "markdown", "write_chart", "write_outputs"]

MARGIN = 0.10
COLUMNS = ("observation", "variant", "label", "input_shape", "output_shape", "mmacs", "ops", "median_ms",
           "p10_ms", "p90_ms", "runs", "vs_baseline")


def _t(rows, variant):
    return next(r["median_ms"] for r in rows if r["variant"] == variant)


def _row(rows, variant):
    return next(r for r in rows if r["variant"] == variant)


def _gmacs_per_s(row):
    return row["mmacs"] / row["median_ms"] if row.get("mmacs") else float("nan")  # MMAC/ms = GMAC/s


def _status(holds: bool, partly: bool = False) -> str:
    return "holds" if holds else ("partly holds" if partly else "does not hold")


def _verdict_a(rows):
    t7, ts = _t(rows, "embed_7x7_s4"), _t(rows, "stem_3x3_s2_x2")
    e16, e7, es = (_gmacs_per_s(_row(rows, v)) for v in ("embed_16x16_s16", "embed_7x7_s4", "stem_3x3_s2_x2"))
    slower = t7 > ts * (1 + MARGIN)
    less_efficient = min(e16, e7) < es * (1 - MARGIN)
    macs = _row(rows, "embed_7x7_s4")["mmacs"] / _row(rows, "stem_3x3_s2_x2")["mmacs"]
    return (_status(slower, less_efficient),
            f"7×7/4 embedding {t7:.3g} ms vs 3×3-s2 stem {ts:.3g} ms for the same output "
            f"({macs:.2f}× the MACs); throughput 16×16/16 {e16:.0f}, 7×7/4 {e7:.0f}, stem {es:.0f} GMAC/s")


def _verdict_b(rows):
    tp, tm, tb = _t(rows, "pool_mixer_4d"), _t(rows, "mhsa_3d"), _t(rows, "mhsa_bnmlp_3d")
    tr, tn = _t(rows, "levit_4d3d_reshape"), _t(rows, "levit_4d3d_nchw")
    cost_r, cost_n = tr / tb - 1, tn / tb - 1
    return (_status(max(cost_r, cost_n) > MARGIN),
            f"a 4D↔3D switch around every MHSA block adds {cost_r:+.0%} (NHWC reshape) and {cost_n:+.0%} "
            f"(NCHW transpose, as a PyTorch export) to the same math on consistent 3D tokens; "
            f"MHSA blocks take {tm / tp:.2f}× pool-mixer blocks")


def _verdict_c(rows):
    tc, tcb, tl, tln = (_t(rows, v) for v in ("conv1x1", "conv1x1_bn", "linear", "layernorm_linear"))
    folded = _row(rows, "conv1x1_bn").get("ops") == _row(rows, "conv1x1").get("ops")
    fold_text = "folded: same ops as Conv1×1" if folded else "not folded away"
    return (_status(tln > tcb * (1 + MARGIN)),
            f"Conv1×1-BN {tcb:.3g} ms (BN {fold_text}, {tcb / tc - 1:+.0%}) vs LayerNorm-Linear {tln:.3g} ms; "
            f"LayerNorm is {(tln - tl) / tln:.0%} of LN-Linear's latency")


def _verdict_d(rows):
    tn, tr, tg, th = (_t(rows, f"mlp_{a}") for a in ("none", "relu", "gelu", "hardswish"))
    gelu_like_relu = abs(tg / tr - 1) <= MARGIN
    hardswish_slow = th > tg * (1 + MARGIN)
    return (_status(gelu_like_relu and hardswish_slow, gelu_like_relu or hardswish_slow),
            f"GELU {tg / tr:.2f}× and HardSwish {th / tr:.2f}× the ReLU model; cost over no activation: "
            f"ReLU {tr - tn:+.3f}, GELU {tg - tn:+.3f}, HardSwish {th - tn:+.3f} ms")


_VERDICTS = {"a": _verdict_a, "b": _verdict_b, "c": _verdict_c, "d": _verdict_d}


def verdicts(rows, observations) -> dict[str, tuple[str, str]]:
    """Observation key -> (status, one-line evidence) from the measured rows."""
    out = {}
    for obs in observations:
        obs_rows = [r for r in rows if r["observation"] == obs.key]
        out[obs.key] = _VERDICTS[obs.key](obs_rows)
    return out


def _cell(value):
    if isinstance(value, dict):
        return ops_to_text(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return "" if value is None else str(value)


def write_csv(rows, path):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
    write_text(path, buffer.getvalue())


def markdown(rows, observations, verdict, meta) -> str:
    """The markdown report: provenance, one table per observation, one verdict line each."""
    lines = [f"# EfficientFormer Section 3 latency analysis: {meta['backend']}", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if k != "backend"]
    lines += [f"- tie margin for verdicts: ±{MARGIN:.0%} of the median", ""]
    for obs in observations:
        status, evidence = verdict[obs.key]
        lines += [f"## ({obs.key}) {obs.title}", "", f"Paper (iPhone 12, CoreML): {obs.paper}.", "",
                  "| variant | input | MMACs | ops | median ms | p10 ms | p90 ms | runs | vs baseline |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in rows if r["observation"] == obs.key):
            label = f"**{r['label']}** (baseline)" if r["variant"] == obs.baseline else r["label"]
            ops = sum(r["ops"].values()) if isinstance(r.get("ops"), dict) else ""
            mmacs = f"{r['mmacs']:.1f}" if r.get("mmacs") is not None else ""
            spread = [f"{r[k]:.3f}" if r.get(k) is not None else "" for k in ("p10_ms", "p90_ms")]
            lines.append(f"| {label} | {_cell(r.get('input_shape'))} | {mmacs} | {ops} | {r['median_ms']:.3f} | "
                         f"{spread[0]} | {spread[1]} | {r['runs']} | {r['vs_baseline']:.2f} |")
        lines += ["", f"**Verdict on {meta['backend']}: {status}** — {evidence}.", ""]
    return "\n".join(lines)


def write_chart(rows, observations, verdict, backend, path):
    """A 2×2 grid of horizontal bar charts (median, p10–p90 whiskers), one panel per observation."""
    matplotlib = require("matplotlib", "search", "the latency-analysis chart")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    colors = ("#4C72B0", "#DD8452", "#55A868", "#C44E52")
    for ax, obs, color in zip(axes.flat, observations, colors):
        obs_rows = [r for r in rows if r["observation"] == obs.key][::-1]
        med = [r["median_ms"] for r in obs_rows]
        # a LUT from benchmark_model has no p10/p90 (the tool prints none): no whisker then
        lo = [r["median_ms"] - (r.get("p10_ms") or r["median_ms"]) for r in obs_rows]
        hi = [(r.get("p90_ms") or r["median_ms"]) - r["median_ms"] for r in obs_rows]
        bars = ax.barh(range(len(obs_rows)), med, xerr=[lo, hi], color=color, alpha=0.85,
                       error_kw={"elinewidth": 1, "capsize": 3, "ecolor": "#333333"})
        for bar, r in zip(bars, obs_rows):
            if r["variant"] == obs.baseline:
                bar.set_hatch("//")
                bar.set_edgecolor("black")
        labels = [r["label"] + (f"\n{r['mmacs']:.3g} MMACs" if r.get("mmacs") else "") for r in obs_rows]
        ax.set_yticks(range(len(obs_rows)), labels, fontsize=9)
        # the axis follows the medians; long p90 tails (a loaded machine) are clipped at its edge
        limit = max(med) * 1.6
        for i, m in enumerate(med):
            ax.text(m + limit * 0.01, i + 0.3, f"{m:.2f} ms", va="center", ha="left", fontsize=8.5,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1})
        ax.set_xlim(0, limit)
        ax.set_xlabel("median latency (ms); whiskers p10-p90 (clipped at the axis); hatched = baseline", fontsize=8)
        ax.set_title(f"({obs.key}) {obs.title}\n{verdict[obs.key][0]} on this backend", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"EfficientFormer Section 3 latency analysis: {backend}", fontsize=13)
    fig.tight_layout()
    with writing(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write_outputs(rows, observations, meta, out_dir) -> dict[str, str]:
    """Writes latency_analysis.{csv,md,png,json} into `out_dir`; returns their paths."""
    os.makedirs(check_run_directory(out_dir), exist_ok=True)
    verdict = verdicts(rows, observations)
    paths = {ext: os.path.join(out_dir, f"latency_analysis.{ext}") for ext in ("csv", "md", "png", "json")}
    write_csv(rows, paths["csv"])
    text = markdown(rows, observations, verdict, meta)
    write_text(paths["md"], text + "\n")
    write_chart(rows, observations, verdict, meta["backend"], paths["png"])
    write_json(paths["json"], {"meta": meta, "rows": rows,
                               "verdicts": {k: {"status": s, "evidence": e} for k, (s, e) in verdict.items()}})
    return paths
