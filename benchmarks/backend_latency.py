r"""Single-image CPU latency of one model under Keras' backends: JAX (`jax.jit`) next to TensorFlow (`tf.function`).

    python -m benchmarks.backend_latency [--model l1] [--runs 30] [--python /path/with/jax/bin/python]

A process has one Keras backend, so each backend runs in its own worker process (started by
`--python`, default this one; it needs jax installed for the JAX side) that builds the model
at 224 px, compiles its forward and waits. This process then times the workers with
`ef_keras.timing.time_interleaved`: every round calls each worker once, in a shuffled order,
so load drift on this shared machine hits both alike. A call is one request over a pipe and
one batch-1 forward; a third worker that answers without computing measures that round
trip, which both backends' times include. The JAX worker loads the TensorFlow worker's
weights, and both report the logits of one fixed image, so the table also shows that they
compute the same function. PyTorch is not measured: no torch is installed here, and PyPI's
torch is a several-GB CUDA build. Writes benchmarks/results/backend_latency.{json,png}.
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
from ef_keras.errors import EfKerasError

FLAGS = flags.FLAGS
RESULT = "backend_latency.json"
PLOT = "backend_latency.png"
#: The backends timed, their compiled call, and why PyTorch is not among them.
CALLS = {"tensorflow": "tf.function", "jax": "jax.jit"}
TORCH_NOT_MEASURED = ("not measured: torch is not installed here, and PyPI's torch is a several-GB CUDA build "
                      "(the torch-backend parity test runs in the slow suite wherever torch is installed)")

# argv: backend ("none": answer without computing), model, weights file (written by tensorflow, read by jax),
# threads. Protocol on the original stdout (libraries' prints go to stderr): one JSON line when ready (the
# logits of a fixed image), then one line "ok" per "run" line read from stdin.
_WORKER = r"""
import json, os, sys
protocol = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
backend, model_name, weights, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if backend == "none":
    call = lambda: None
    protocol.write(json.dumps({"logits": None}) + "\n")
else:
    import numpy as np
    if backend == "tensorflow":  # threads first: building a model initialises TensorFlow
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import ef_keras
    model = ef_keras.create_model(model_name)
    if backend == "tensorflow":
        model.save_weights(weights)
        forward = tf.function(lambda x: model(x, training=False))
        run = lambda x: forward(x).numpy()
    else:
        import jax
        model.load_weights(weights)
        state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
        forward = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
        run = lambda x: np.asarray(forward(*state, x).block_until_ready())
    x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype("float32")
    logits = run(x)  # compiles
    call = lambda: run(x)
    protocol.write(json.dumps({"logits": logits[0].tolist()}) + "\n")
protocol.flush()
for line in sys.stdin:
    if line.strip() != "run":
        break
    call()
    protocol.write("ok\n")
    protocol.flush()
"""


class BackendBenchmarkError(EfKerasError):
    """A backend worker that could not start (its last error line says why)."""


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_string("model", "l1", "Registered model name to time.")
    flags.DEFINE_integer("runs", 30, "Timed rounds (each backend once per round).", lower_bound=1)
    flags.DEFINE_integer("warmup", 5, "Untimed calls per backend first.", lower_bound=0)
    flags.DEFINE_integer("threads", 2, "TensorFlow's intra-op threads (JAX's CPU client uses every core).",
                         lower_bound=1)
    flags.DEFINE_string("python", sys.executable, "The Python that runs the workers (needs keras, tensorflow, jax).")
    define_results_dir_flag()


class Worker:
    """A worker process of one backend: `logits` once ready; calling it runs one forward."""

    def __init__(self, backend: str, model: str, weights: str, threads: int, python: str):
        self.backend = backend
        self.proc = subprocess.Popen([python, "-c", _WORKER, backend, model, weights, str(threads)], cwd=ROOT,
                                     env={**os.environ, "KERAS_BACKEND": "tensorflow" if backend == "none" else backend,
                                          "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"},
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            errors = [e for e in self.proc.stderr.read().splitlines() if e.strip()]
            raise BackendBenchmarkError(f"the {backend} worker ({python}) did not start: "
                                        f"{errors[-1] if errors else 'no output'} (--python must be an environment "
                                        "with keras, tensorflow and jax)")
        self.logits = json.loads(line)["logits"]

    def __call__(self):
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()
        self.proc.stderr.close()
        self.proc.stdout.close()


def plot(result: dict, path: str):
    rows = result["rows"]
    bar_chart(path, [f"{r['backend']} ({r['call']})" for r in rows], [r["median_ms"] for r in rows],
              f"{result['model']} batch-1 224 px latency, ms (bar: median; whisker: p10 to p90)",
              f"CPU, {result['runs']} interleaved rounds, one worker process per backend",
              low=[r["p10_ms"] for r in rows], high=[r["p90_ms"] for r in rows], colors=["tab:orange", "tab:green"])


def render(result: dict) -> str:
    """The README table of a backend_latency result."""
    rows = {r["backend"]: r for r in result["rows"]}
    lines = ["| backend (compiled call) | median (p10) ms | / TensorFlow median (p10) |", "|---|---:|---:|"]
    tf_row = rows["tensorflow"]
    for r in result["rows"]:
        lines.append(f"| {r['backend']} ({r['call']}) | {r['median_ms']:.1f} ({r['p10_ms']:.1f}) "
                     f"| {r['median_ms'] / tf_row['median_ms']:.2f} ({r['p10_ms'] / tf_row['p10_ms']:.2f}) |")
    lines.append(f"| torch | {result['torch']} | - |")
    ipc, r = result["round_trip"], result["jax_over_tf_per_round"]
    verdict = ("within the noise: the per-round ratios lie on both sides of 1" if r["p10"] < 1 < r["p90"] else
               f"JAX {'faster' if r['p90'] < 1 else 'slower'} in at least 90 % of the rounds")
    return "\n".join(lines) + (
        f"\n\nJAX/TensorFlow of each round (both timed within it): p10 {r['p10']:.2f}, median {r['median']:.2f}, "
        f"p90 {r['p90']:.2f}: {verdict}."
        f" {result['model']} at batch 1, 224 px: {result['runs']} interleaved rounds after {result['warmup']} "
        f"warm-up calls, one worker process per backend ({result['versions']}); TensorFlow on {result['threads']} "
        f"intra-op threads, JAX's CPU client on its default (every core). Each time includes a pipe round trip of "
        f"{ipc['median_ms']:.2f} ms median (measured by a worker that computes nothing). The JAX worker runs the "
        f"TensorFlow worker's weights: logits differ by at most {result['logits_max_abs_diff']:.1e}.")


def main(argv):
    del argv
    import numpy as np

    run = provenance.start()
    workers = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "model.weights.h5")
        try:
            for backend in ("tensorflow", "jax", "none"):  # tensorflow first: it writes the weights
                print(f"starting the {backend} worker" if backend != "none" else "starting the round-trip worker",
                      flush=True)
                workers[backend] = Worker(backend, FLAGS.model, weights, FLAGS.threads, FLAGS.python)
            times = timing.time_interleaved(workers, FLAGS.runs, FLAGS.warmup, progress=timing.print_every(10))
        finally:
            for w in workers.values():
                w.close()
    versions = subprocess.run([FLAGS.python, "-c", "import importlib.metadata as m; print(', '.join("
                               "f'{p} {m.version(p)}' for p in ('keras', 'tensorflow', 'jax', 'jaxlib')))"],
                              capture_output=True, text=True, check=True).stdout.strip()
    diff = float(np.abs(np.asarray(workers["jax"].logits) - np.asarray(workers["tensorflow"].logits)).max())
    # Each round timed both backends within a few tens of ms, so the round's ratio cancels most of the load drift.
    per_round = timing.percentile(times["jax"] / times["tensorflow"], timing.PERCENTILES)
    result = {"model": FLAGS.model, "runs": FLAGS.runs, "warmup": FLAGS.warmup, "threads": FLAGS.threads,
              "versions": versions, "logits_max_abs_diff": diff, "torch": TORCH_NOT_MEASURED,
              "jax_over_tf_per_round": dict(zip(("p10", "median", "p90"), map(float, per_round))),
              "round_trip": timing.summarize(times["none"]),
              "rows": [{"backend": b, "call": call, **timing.summarize(times[b])} for b, call in CALLS.items()]}
    plot(result, os.path.join(FLAGS["results-dir"].value, PLOT))
    return finish(run, RESULT, result, render)


if __name__ == "__main__":
    define_flags()
    run_cli(main)
