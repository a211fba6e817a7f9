r"""Training throughput of two `--strategy multi_worker` processes on 127.0.0.1 against one process.

    python -m benchmarks.worker_throughput [--model l1] [--steps 20] [--rounds 3]

Each run is real `ef_keras.training.loop.train` on the embedded data (the embedded recipe: 64
px, batch 64, no augmentation), one epoch of `--steps` steps, in fresh processes: "1 worker" is
one process on the default strategy, "2 workers" two processes with TF_CONFIG
(MultiWorkerMirroredStrategy, one CPU replica each, half the global batch each; the chief's
steps are timed, and they wait for the collective all-reduce). The runs alternate under
`ef_keras.timing.time_interleaved` (one run of each per round, shuffled), whose times are
whole runs (start-up, tracing, steps, evaluation); the throughput comes from the steps
themselves, timed inside the training process after `--skip` steps (the first traces).

**Both workers share this machine's cores** (2 here): the two-worker figure measures the
cost of the collective path on one host, not scaling. On several hosts each worker brings its
own cores. Writes benchmarks/results/worker_throughput.{json,png}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from absl import flags

from benchmarks import ROOT, bar_chart, define_results_dir_flag, finish
from ef_keras import provenance, timing
from ef_keras.cli import run as run_cli
from ef_keras.training.loop import local_cluster

FLAGS = flags.FLAGS
RESULT = "worker_throughput.json"
PLOT = "worker_throughput.png"
CONFIGS = ("1 worker", "2 workers")

# argv: settings JSON. Prints (last stdout line) the perf_counter time after each training step.
_RUN = r"""
import json, sys, time
from ef_keras.training.loop import train
from ef_keras.training.recipe import EMBEDDED
s = json.loads(sys.argv[1])
stamps = []
train(s["model"], "embedded", out_dir=s["out"], recipe=EMBEDDED.replace(epochs=1, batch_size=s["batch_size"],
      augment="none"), strategy=s["strategy"], steps_per_epoch=s["steps"], eval_steps=1, checkpoint_every=0,
      verbose=0, log=lambda message: None, on_step=lambda step, loss: stamps.append(time.perf_counter()))
print(json.dumps(stamps))
"""


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_string("model", "l1", "Registered model name (or architecture JSON) to train.")
    flags.DEFINE_integer("steps", 20, "Training steps per run.", lower_bound=3)
    flags.DEFINE_integer("skip", 2, "Steps (the first traces) left out of the per-step times.", lower_bound=1)
    flags.DEFINE_integer("batch-size", 64, "Global batch (split over the workers).", lower_bound=2)
    flags.DEFINE_integer("rounds", 3, "Interleaved rounds (one run of each configuration each).", lower_bound=1)
    define_results_dir_flag()


def _launch(settings: dict, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _RUN, json.dumps(settings)], cwd=ROOT, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _step_ms(procs: list[subprocess.Popen], skip: int) -> list[float]:
    """Waits for the processes; the chief's (first's) per-step ms after `skip` steps."""
    outs = [p.communicate() for p in procs]
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            raise RuntimeError(f"a training process failed (exit {p.returncode}):\n{err[-3000:]}")
    stamps = json.loads(outs[0][0].strip().splitlines()[-1])
    return [(b - a) * 1000.0 for a, b in zip(stamps[skip - 1:], stamps[skip:])]


def runners(work_dir: str, step_ms: dict[str, list[float]]) -> dict:
    """{configuration: a function that trains one run of it}, appending its per-step ms to `step_ms`."""
    base = {"model": FLAGS.model, "steps": FLAGS.steps, "batch_size": FLAGS["batch-size"].value}
    count = iter(range(1 << 30))

    def one():
        settings = {**base, "out": os.path.join(work_dir, f"one-{next(count)}"), "strategy": "auto"}
        step_ms["1 worker"] += _step_ms([_launch(settings, {})], FLAGS.skip)

    def two():
        out = os.path.join(work_dir, f"two-{next(count)}")
        procs = [_launch({**base, "out": out, "strategy": "multi_worker"}, {"TF_CONFIG": config})
                 for config in local_cluster(2)]
        step_ms["2 workers"] += _step_ms(procs, FLAGS.skip)

    return dict(zip(CONFIGS, (one, two)))


def plot(result: dict, path: str):
    rows = result["rows"]
    bar_chart(path, [r["config"] for r in rows], [r["images_per_s"] for r in rows],
              f"{result['model']} training images/s at the median step (global batch {result['batch_size']})",
              f"{result['cores']} shared CPU cores, {result['rounds']} interleaved rounds",
              colors=["tab:blue", "tab:purple"])


def render(result: dict) -> str:
    """The README table of a worker_throughput result."""
    rows = {r["config"]: r for r in result["rows"]}
    one = rows["1 worker"]
    lines = ["| processes on 127.0.0.1 | step median (p10) ms | images/s at the median | / 1 worker "
             "| whole run median s |", "|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        s = r["step"]
        lines.append(f"| {r['config']} | {s['median_ms']:.0f} ({s['p10_ms']:.0f}) | {r['images_per_s']:.1f} "
                     f"| {r['images_per_s'] / one['images_per_s']:.2f} | {r['run']['median_ms'] / 1000:.0f} |")
    return "\n".join(lines) + (
        f"\n\n`ef_keras.training.loop.train` of {result['model']} on the embedded data, global batch "
        f"{result['batch_size']} at 64 px, {result['steps']} steps a run (the first {result['skip']} left out of "
        f"the step times), {result['rounds']} interleaved rounds; {result['steps_timed']} timed steps per "
        f"configuration. **Both workers shared the same {result['cores']} cores**, so this is the cost of "
        "the multi-worker path on one host, not a speed-up: on separate hosts each worker brings its own cores.")


def main(argv):
    del argv
    run = provenance.start()
    step_ms = {config: [] for config in CONFIGS}
    with tempfile.TemporaryDirectory() as work_dir:
        whole = timing.time_interleaved(runners(work_dir, step_ms), FLAGS.rounds, warmup=0,
                                        progress=lambda done, total: print(f"round {done}/{total}", flush=True))
    rows = []
    for config in CONFIGS:
        step = timing.summarize(step_ms[config])
        rows.append({"config": config, "step": step, "run": timing.summarize(whole[config]),
                     "images_per_s": FLAGS["batch-size"].value / (step["median_ms"] / 1000.0)})
    result = {"model": FLAGS.model, "batch_size": FLAGS["batch-size"].value, "steps": FLAGS.steps,
              "skip": FLAGS.skip, "rounds": FLAGS.rounds, "cores": os.cpu_count(),
              "steps_timed": len(step_ms["1 worker"]), "rows": rows}
    plot(result, os.path.join(FLAGS["results-dir"].value, PLOT))
    return finish(run, RESULT, result, render)


if __name__ == "__main__":
    define_flags()
    run_cli(main)
