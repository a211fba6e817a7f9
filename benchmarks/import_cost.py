"""What `import ef_keras` and the core install cost, before (0.1, one install for everything) and after.

    python -m benchmarks.import_cost [--work /tmp/ef_import_cost] [--runs 15] [--before ed4c180] [--after HEAD]

Three fresh virtual environments, made once under --work (re-used when they are there):
`before` holds commit --before installed as 0.1 installed it (`pip install .`: every
dependency), `core` holds commit --after with the core install only (`pip install .`), and
`all` holds commit --after with every extra (`pip install ".[all]"`). Each commit is taken
with `git archive`, so the working tree's uncommitted changes are not measured.

In one run it measures, per environment:
- the wall time of `import ef_keras` in a fresh interpreter (from just before the import
  to just after it), over --runs fresh subprocesses started in interleaved rounds (before,
  core, all, before, ...) so that load on a shared machine hits all three alike: median and
  10th percentile (`ef_keras.timing.percentile`, the project's one percentile);
- the CPU time (user + system) of the import, which contention from other jobs inflates less
  than the wall time;
- the peak resident memory of that interpreter after the import (VmHWM; median over runs);
- which extras' packages the import loaded (TensorFlow and Keras import scipy, sklearn,
  matplotlib and PIL themselves when those are installed);
- the size of site-packages (`du`), the number of installed distributions and the time
  `pip install` took when this run made the environment.

Prints a side-by-side table with the after/before ratios and writes
benchmarks/results/import_cost.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import flags

from benchmarks import define_results_dir_flag, finish
from benchmarks.checkout import export_commit, short_commit
from ef_keras import provenance, timing
from ef_keras.cli import run as run_cli

FLAGS = flags.FLAGS
RESULT = "import_cost.json"
ENVIRONMENTS = ("before", "core", "all")
EXTRA_MODULES = ("coremltools", "tensorflow_datasets", "matplotlib", "scipy", "sklearn", "PIL", "tf2onnx", "onnx",
                 "onnxruntime", "ai_edge_litert", "jsonschema")
#: Run in a fresh interpreter outside the repository, so the environment's installed copy is imported.
_PROBE = f"""
import json, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t0, c0 = time.perf_counter(), cpu()
import ef_keras
seconds, cpu_seconds = time.perf_counter() - t0, cpu() - c0
rss = [int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
extras = sorted({{m.split(".")[0] for m in sys.modules}} & set({EXTRA_MODULES!r}))
print(json.dumps({{"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": rss, "extras_loaded": extras}}))
"""


def _run(cmd, env=None, **kwargs):
    """Runs `cmd` without the caller's PYTHONPATH: pip in an environment must see only that environment
    (with it, pip counted a package on PYTHONPATH as installed and left it out of the venv)."""
    env = {k: v for k, v in (os.environ if env is None else env).items() if k != "PYTHONPATH"}
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, **kwargs)


def make_environment(path: str, commit: str, extras: str, work: str) -> float | None:
    """Makes the venv `path` with `commit` installed (`extras` e.g. "[all]"); seconds of pip, None if it existed."""
    if os.path.exists(os.path.join(path, "bin", "python")):
        return None
    src = export_commit(commit, os.path.join(work, f"src-{commit}"))
    _run([sys.executable, "-m", "venv", path])
    t0 = time.perf_counter()
    _run([os.path.join(path, "bin", "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
          src + extras])
    return time.perf_counter() - t0


def site_packages(path: str) -> str:
    out = _run([os.path.join(path, "bin", "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    return out.stdout.strip()


def install_size(path: str) -> dict:
    """Size of site-packages (MB, `du -sk`) and the number of installed distributions."""
    kb = int(_run(["du", "-sk", site_packages(path)]).stdout.split()[0])
    dists = json.loads(_run([os.path.join(path, "bin", "python"), "-m", "pip", "list", "--format=json",
                             "--disable-pip-version-check"]).stdout)
    return {"site_packages_mb": kb / 1024, "distributions": len(dists)}


def probe(path: str) -> dict:
    """One fresh interpreter of the environment: `import ef_keras` wall and CPU seconds, peak RSS MB, extras."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = _run([os.path.join(path, "bin", "python"), "-c", _PROBE], env=env, cwd="/")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median_p10(values) -> tuple[float, float]:
    p10, median = timing.percentile(values, [10, 50])
    return float(median), float(p10)


def measure(paths: dict, runs: int) -> dict:
    """Interleaved rounds of `probe` over the environments; per environment the samples and their summary."""
    samples = {name: [] for name in paths}
    for i in range(runs):
        for name, path in paths.items():
            samples[name].append(probe(path))
        print(f"round {i + 1}/{runs}: " + ", ".join(f"{n} {s[-1]['seconds']:.2f} s" for n, s in samples.items()),
              file=sys.stderr, flush=True)
    result = {}
    for name, s in samples.items():
        median, p10 = _median_p10([x["seconds"] for x in s])
        result[name] = {"import_median_s": median, "import_p10_s": p10,
                        "import_cpu_median_s": _median_p10([x["cpu_seconds"] for x in s])[0],
                        "peak_rss_median_mb": _median_p10([x["peak_rss_mb"] for x in s])[0],
                        "extras_loaded": s[0]["extras_loaded"], "samples_s": [round(x["seconds"], 4) for x in s]}
    return result


def render(result: dict) -> str:
    """The README table of an import_cost result."""
    env, commits = result["environments"], result["commits"]
    rows = [("`import ef_keras` median s", "import_median_s", "{:.2f}"),
            ("`import ef_keras` p10 s", "import_p10_s", "{:.2f}"),
            ("`import ef_keras` CPU s (user + sys), median", "import_cpu_median_s", "{:.2f}"),
            ("peak RSS after the import, MB", "peak_rss_median_mb", "{:.0f}"),
            ("site-packages, MB", "site_packages_mb", "{:.0f}"),
            ("installed distributions", "distributions", "{:d}")]
    lines = [f"| | before ({commits['before']}, `pip install .`) | after ({commits['after']}), core (`pip install .`) "
             "| after, `.[all]` | core / before | all / before |", "|---|---:|---:|---:|---:|---:|"]
    for label, key, fmt in rows:
        v = [env[n][key] for n in ENVIRONMENTS]
        lines.append(f"| {label} | " + " | ".join(fmt.format(x) for x in v)
                     + f" | {v[1] / v[0]:.2f} | {v[2] / v[0]:.2f} |")
    lines.append("| extras' packages loaded by the import | "
                 + " | ".join(", ".join(env[n]["extras_loaded"]) or "none" for n in ENVIRONMENTS) + " | | |")
    return "\n".join(lines) + f"\n\n{result['runs']} fresh interpreters per environment, interleaved."


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_string("work", "/tmp/ef_import_cost", "where the three virtual environments are made (re-used)")
    flags.DEFINE_integer("runs", 15, "fresh interpreters per environment (interleaved rounds)", lower_bound=3)
    flags.DEFINE_string("before", "ed4c180", "commit of the 0.1 install")
    flags.DEFINE_string("after", "HEAD", "commit of the lean install")
    define_results_dir_flag()


def main(argv):
    del argv
    run = provenance.start()
    work = os.path.abspath(FLAGS.work)
    os.makedirs(work, exist_ok=True)
    commits = {"before": short_commit(FLAGS.before), "after": short_commit(FLAGS.after)}
    paths = {name: os.path.join(work, f"{name}-{commits['before' if name == 'before' else 'after']}")
             for name in ENVIRONMENTS}
    install_s = {}
    for name, path in paths.items():
        extras = "[all]" if name == "all" else ""
        print(f"environment {name}: {path}", flush=True)
        install_s[name] = make_environment(path, commits["before" if name == "before" else "after"], extras, work)
    result = {"commits": commits, "runs": FLAGS.runs, "environments": measure(paths, FLAGS.runs)}
    for name, path in paths.items():
        result["environments"][name].update(install_size(path), pip_install_s=install_s[name])
    return finish(run, RESULT, result, render)


if __name__ == "__main__":
    define_flags()
    run_cli(main)
