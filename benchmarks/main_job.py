"""The README's main job on a fresh install, timed: install, supernet, slimming, and what it returned.

    python -m benchmarks.main_job [--keep-venv]

Exports the committed tree (`git archive HEAD`) into a temporary folder and runs the README's
set-up command there exactly (`COMMAND`; pip's download cache is whatever this
machine has; the result says whether it was used). Records the install and job wall times,
the job's own split between supernet training and slimming, the architecture, the number of
steps and which rule decided each, and copies the job's log, trajectory, architecture and plot
into benchmarks/results/main_job/, and the supernet into runs/main_job/supernet (the input of
`benchmarks.search_quality`). Writes benchmarks/results/main_job.json.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from absl import flags

from benchmarks import ROOT, define_results_dir_flag, finish
from ef_keras import provenance
from ef_keras.cli import run as run_cli

FLAGS = flags.FLAGS
RESULT = "main_job.json"
FILES = ("trajectory.json", "trajectory.png", "architecture.json")
#: The README's main job, in its two timed parts (tests/test_install.py checks the README holds COMMAND).
INSTALL = 'python3 -m venv .venv && . .venv/bin/activate && pip install ".[all]" -c constraints.txt'
JOB = "python -m search.slim --target-like l1"
COMMAND = f"{INSTALL} && {JOB}"


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_boolean("keep-venv", False, "Keep the temporary checkout and its venv (to inspect them).")
    define_results_dir_flag()


def _children_cpu_s() -> float:
    """User + system CPU seconds of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: str, cwd: str, log) -> tuple[float, float]:
    """(wall s, CPU s) of `cmd`: the CPU seconds (user + system of every process it waited for) depend
    far less on the host's load than the wall time, so a run on a busy host can still be sized."""
    start, cpu_start = time.perf_counter(), _children_cpu_s()
    proc = subprocess.run(["bash", "-c", cmd], cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                          env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
    if proc.returncode:
        raise RuntimeError(f"`{cmd}` failed with exit {proc.returncode}; see the log")
    return time.perf_counter() - start, _children_cpu_s() - cpu_start


def render(result: dict) -> str:
    """The README table of the main job: its steps, timing and what it returned."""
    from search.slim import summary_table

    t = result["timing"]
    rules = result["decided_by"]
    return (summary_table(result["trajectory"]) +
            f"\n\nOn a fresh install: **{t['total_s'] / 60:.1f} min** wall (the install "
            f"{t['install_s']:.0f} s{' with a warm pip cache' if t['pip_cache_used'] else ''}, then the job "
            f"{t['job_s']:.0f} s: supernet {t['supernet_s']:.0f} s ({100 * t['supernet_s'] / t['job_s']:.0f} %), "
            f"slimming and the final test {t['slimming_s']:.0f} s ({100 * t['slimming_s'] / t['job_s']:.0f} %))"
            + (f"; the job used {t['job_cpu_s']:.0f} CPU s" if "job_cpu_s" in t else "") + ". "
            f"{result['steps']} steps, {rules.get('loss', 0)} decided by the primary criterion. Returned widths "
            f"{'/'.join(map(str, result['config']['widths']))}, depths {'/'.join(map(str, result['config']['depths']))}, "
            f"{result['config']['num_vit']} MB3D at {result['latency_ms']:.3f} ms predicted (target "
            f"{result['target_ms']:.3f} ms, L1 on this LUT).")


def main(argv):
    del argv
    run = provenance.start()
    out = os.path.join(FLAGS["results-dir"].value, "main_job")
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="main_job_")
    try:
        subprocess.run(f"git -C {ROOT} archive HEAD | tar -x -C {work}", shell=True, check=True)
        log_path = os.path.join(out, "main_job.log")
        cache = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True)
        cached = cache.returncode == 0 and os.path.isdir(cache.stdout.strip()) and bool(os.listdir(cache.stdout.strip()))
        with open(log_path + ".tmp", "w") as log:
            install, install_cpu = _timed(INSTALL.replace("pip install", "pip install -q"), work, log)
            job, job_cpu = _timed(f". .venv/bin/activate && {JOB}", work, log)
        os.replace(log_path + ".tmp", log_path)
        text = open(log_path).read()
        for name in FILES:
            shutil.copy(os.path.join(work, "runs", "slim", name), os.path.join(out, name))
        with open(os.path.join(work, "runs", "slim", "supernet", "supernet.json")) as f:
            supernet_s = json.load(f)["train_seconds"]
        kept = os.path.join(ROOT, "runs", "main_job", "supernet")  # benchmarks.search_quality's default input
        shutil.rmtree(kept, ignore_errors=True)  # the previous main job's copy (runs/ is ours, not the user's)
        shutil.copytree(os.path.join(work, "runs", "slim", "supernet"), kept)
        with open(os.path.join(out, "trajectory.json")) as f:
            trajectory = json.load(f)
        total_reported = float(re.search(r"steps, (\d+) s \(supernet", text).group(1))
    finally:
        if not FLAGS["keep-venv"].value:
            shutil.rmtree(work, ignore_errors=True)
    last = trajectory["steps"][-1]
    from search.arch import Arch

    arch = Arch.from_dict(last["arch"])
    result = {"command": COMMAND, "timing": {"install_s": install, "job_s": job, "total_s": install + job,
                                             "supernet_s": supernet_s, "slimming_s": total_reported - supernet_s,
                                             "pip_cache_used": cached, "install_cpu_s": install_cpu,
                                             "job_cpu_s": job_cpu},
              "config": {"widths": list(arch.widths), "depths": list(arch.depths), "num_vit": arch.num_vit},
              "latency_ms": last["latency_ms"], "target_ms": trajectory["target_ms"],
              "steps": len(trajectory["steps"]) - 1, "decided_by": trajectory["steps_decided_by"],
              "test": trajectory.get("test"), "trajectory": trajectory,
              "files": [os.path.join("main_job", n) for n in FILES + ("main_job.log",)]}
    return finish(run, RESULT, result, render)


if __name__ == "__main__":
    define_flags()
    run_cli(main)
