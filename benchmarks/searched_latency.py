r"""Is the searched architecture as fast as predicted, and how does it compare with L1? Its TFLite latency now.

    python -m benchmarks.searched_latency                # the main job's architecture, 100 rounds
    python -m benchmarks.searched_latency --arch runs/main_job/architecture.json --runs 30

`--arch` defaults to the search's committed answer, `benchmarks/results/main_job/architecture.json`
(what `python -m benchmarks.main_job` writes), so re-running the main job and then this script
measures the new answer. The architecture is converted (224x224, fp32, verified) with
`deploy.to_tflite` and timed interleaved with the LUT's reference models on this host
(`android_ios_bench.host.cli.check_lut`; L1 is one of them). The result compares the measured
latency with the LUT's prediction times today's drift scale (the reference models' median ratio
now / LUT session) for the median, the p10 and the minimum, and gives the searched model over
L1 from the same run.

Writes benchmarks/results/searched_latency.json.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from benchmarks import RESULTS_DIR, ROOT, define_results_dir_flag, finish  # noqa: E402
from ef_keras import provenance  # noqa: E402
from ef_keras.cli import run as run_cli  # noqa: E402

FLAGS = flags.FLAGS
RESULT = "searched_latency.json"
SEARCHED = os.path.relpath(os.path.join(RESULTS_DIR, "main_job", "architecture.json"), ROOT)
STATISTICS = ("median_ms", "p10_ms", "min_ms")


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_string("arch", SEARCHED, "Architecture JSON of the searched model (relative to the repository root "
                        "or absolute).")
    flags.DEFINE_string("lut", None, "LUT (default: the embedded host LUT).")
    flags.DEFINE_integer("runs", 100, "Timed interleaved rounds.", lower_bound=1)
    define_results_dir_flag()


def measure(arch_path: str, lut_path: str | None, runs: int) -> dict:
    """Converts `arch_path`, times it beside the LUT's reference models, and compares with the prediction and L1."""
    import deploy
    from android_ios_bench.host.cli import check_lut
    from android_ios_bench.lut import default_lut_path
    from android_ios_bench.predictor import predict
    from ef_keras import EfficientFormer, EfficientFormerConfig

    lut_path = lut_path or default_lut_path()
    config = EfficientFormerConfig.load(arch_path)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "searched.tflite")
        deploy.to_tflite(EfficientFormer(config, input_shape=(224, 224, 3)), path, measure=False)
        drift = check_lut(lut_path, runs=runs, extra={"searched": path}, log=print)
    measured = drift["extra"]["searched"]
    rows = []
    for stat in STATISTICS:
        predicted, scale = predict(config, lut_path, statistic=stat).ms, drift["scale"][stat]
        rows.append({"statistic": stat, "predicted_lut_ms": predicted, "drift_scale": scale,
                     "predicted_today_ms": predicted * scale, "measured_ms": measured[stat],
                     "error_pct": 100 * (predicted * scale - measured[stat]) / measured[stat]})
    l1 = next(m for m in drift["models"] if m["name"] == "l1")
    return {"architecture": config.to_dict(), "lut": os.path.relpath(lut_path, ROOT),
            "runs": runs, "rows": rows, "l1": {"median_ms": l1["now_median_ms"], "p10_ms": l1["now_p10_ms"]},
            "searched_over_l1": {s: measured[s] / l1[f"now_{s}"] for s in ("median_ms", "p10_ms")}}


def render(result: dict) -> str:
    """The README table of a searched_latency result."""
    a = result["architecture"]
    lines = ["| statistic | LUT prediction ms | drift scale | prediction today ms | measured ms | error % |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['statistic'][:-3]} | {r['predicted_lut_ms']:.2f} | {r['drift_scale']:.3f} "
              f"| {r['predicted_today_ms']:.2f} | {r['measured_ms']:.2f} | {r['error_pct']:+.1f} |"
              for r in result["rows"]]
    ratio = result["searched_over_l1"]
    return "\n".join(lines) + (
        f"\n\n`{result['arch']}` ({a.get('name')}: widths {'/'.join(map(str, a['widths']))}, depths "
        f"{'/'.join(map(str, a['depths']))}, {a['num_vit']} MB3D), TFLite fp32 at 224x224, timed beside the LUT's "
        f"reference models (`{result['lut']}`) in {result['runs']} interleaved rounds. L1 in the same run: "
        f"{result['l1']['median_ms']:.2f} ms median, {result['l1']['p10_ms']:.2f} ms p10; searched / L1 = "
        f"{ratio['median_ms']:.2f} by the median, {ratio['p10_ms']:.2f} by p10.")


def main(argv):
    del argv
    run = provenance.start()
    arch = FLAGS.arch if os.path.isabs(FLAGS.arch) else os.path.join(ROOT, FLAGS.arch)
    result = measure(arch, FLAGS.lut, FLAGS.runs)
    result["arch"] = FLAGS.arch
    return finish(run, RESULT, result, render)


if __name__ == "__main__":
    define_flags()
    run_cli(main)
