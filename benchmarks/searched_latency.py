"""Is the searched architecture as fast as predicted? Its TFLite latency now vs the LUT's prediction.

    python benchmarks/searched_latency.py --arch runs/slim/architecture.json [--lut LUT] [--runs 100]

Converts the architecture (224x224, fp32, verified) with deploy.to_tflite, times it
interleaved with the LUT's reference models on this host (`android_ios_bench.host.check_lut`),
and compares the measured latency with the prediction times today's drift scale (the
reference models' median ratio now / LUT session), for the median, the p10 and the minimum
(the LUT's default statistic). Writes
searched_latency.json into --out and prints one table.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(arch_path, lut_path=None, runs=100, out_dir="benchmarks/results"):
    import tempfile

    import deploy
    from android_ios_bench.host.cli import check_lut
    from android_ios_bench.lut import default_lut_path
    from android_ios_bench.predictor import predict
    from ef_keras import EfficientFormer, EfficientFormerConfig
    from ef_keras.output import write_json

    lut_path = lut_path or default_lut_path()
    config = EfficientFormerConfig.load(arch_path)
    with tempfile.TemporaryDirectory() as tmp:
        tflite = os.path.join(tmp, "searched.tflite")
        deploy.to_tflite(EfficientFormer(config, input_shape=(224, 224, 3)), tflite)
        drift = check_lut(lut_path, runs=runs, extra={"searched": tflite})
    rows = []
    for stat in ("median_ms", "p10_ms", "min_ms"):
        predicted = predict(config, lut_path, statistic=stat).ms
        scale = drift["scale"][stat]
        measured = drift["extra"]["searched"][stat]
        rows.append({"statistic": stat, "predicted_lut_ms": round(predicted, 3), "drift_scale": round(scale, 4),
                     "predicted_today_ms": round(predicted * scale, 3), "measured_ms": round(measured, 3),
                     "error_pct": round(100 * (predicted * scale - measured) / measured, 2)})
    result = {"architecture": config.to_dict(), "lut": os.path.relpath(lut_path), "runs": runs, "rows": rows}
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "searched_latency.json"), result)
    print("| statistic | LUT prediction ms | drift scale | prediction today ms | measured ms | error % |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['statistic']} | {r['predicted_lut_ms']} | {r['drift_scale']} | {r['predicted_today_ms']} | "
              f"{r['measured_ms']} | {r['error_pct']:+} |")
    return result


def main():
    from absl import app, flags
    flags.DEFINE_string("arch", "runs/slim/architecture.json", "architecture JSON written by search.slim")
    flags.DEFINE_string("lut", None, "LUT (default: the embedded host LUT)")
    flags.DEFINE_integer("runs", 100, "timed interleaved rounds")
    flags.DEFINE_string("out", "benchmarks/results", "output directory")
    F = flags.FLAGS
    app.run(lambda argv: run(F.arch, F.lut, F.runs, F.out) and None)


if __name__ == "__main__":
    main()
