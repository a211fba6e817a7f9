"""Re-runs every registered benchmark, then renders the README's results regions from what they wrote.

    python -m benchmarks.run_all --quick      # reduced sizes (under 20 minutes on the 2-core VM)
    python -m benchmarks.run_all              # the committed results' own arguments (hours)
    python -m benchmarks.run_all --quick --only build_time,model_latency

Each benchmark of `benchmarks.registry.BENCHMARKS` runs as `python -m MODULE ARGS
--results-dir DIR` in its own process, one after another (never two timings at once), with
its own progress lines. A failed benchmark is reported and the others still run; the exit
code is 1 if any failed. Then `benchmarks.report` rewrites the README regions, so a reviewer
can compare the verdicts with the committed ones (`git diff README.md`).

A tree with uncommitted changes may be measured: the run says so at the start, and every
result header and rendered table says "dirty".

Its own record, with the time each benchmark took, goes to `run_all_quick.json` (or
`run_all.json`) in the results directory, through the same header as every result file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from absl import flags

from benchmarks import RESULTS_DIR, ROOT
from ef_keras import provenance
from ef_keras.cli import run as run_cli
from ef_keras.errors import InputError

FLAGS = flags.FLAGS


def result_file(quick: bool) -> str:
    """The file in which a run of this mode records itself."""
    return "run_all_quick.json" if quick else "run_all.json"


def render(result: dict) -> str:
    """One sentence: how long the run took, and each benchmark."""
    parts = ", ".join(f"{b['module'].removeprefix('benchmarks.')} {b['seconds'] / 60:.1f}"
                      + ("" if b["exit_code"] == 0 else f" (FAILED, exit {b['exit_code']})")
                      for b in result["benchmarks"])
    return (f"`python -m benchmarks.run_all{' --quick' if result['quick'] else ''}` took "
            f"**{result['seconds'] / 60:.1f} min** on this host (minutes per benchmark: {parts}).")


def define_flags():
    """Defines this tool's flags (importing the module defines none)."""
    flags.DEFINE_bool("quick", False, "Run every benchmark at its reduced size.")
    flags.DEFINE_list("only", None, "Benchmarks to run (module names without 'benchmarks.'; default: all).")
    flags.DEFINE_string("results-dir", RESULTS_DIR, "Where the result files go (and are rendered from).")
    flags.DEFINE_string("readme", os.path.join(ROOT, "README.md"), "The README whose regions are rendered.")
    flags.DEFINE_bool("report", True, "Render the README regions at the end.")


def selected(only):
    """The registered benchmarks named in `only` (all when None), in registry order."""
    from benchmarks.registry import BENCHMARKS

    names = {b.module.removeprefix("benchmarks."): b for b in BENCHMARKS}
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise InputError(f"--only names unknown benchmarks {', '.join(unknown)}; choose from {', '.join(names)}")
    return [b for name, b in names.items() if only is None or name in only]


def main(argv):
    del argv
    run = provenance.start()
    benchmarks = selected(FLAGS.only)
    results_dir = os.path.abspath(FLAGS["results-dir"].value)
    git = provenance.git_state()
    if git["dirty"]:
        print(f"note: the tree has uncommitted changes ({', '.join(git['changed'][:5])}"
              f"{', ...' if len(git['changed']) > 5 else ''}); the results and tables will say \"dirty\"", flush=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    records, failed = [], []
    total = time.monotonic()
    for i, b in enumerate(benchmarks, 1):
        if FLAGS.quick and b.quick is None:
            print(f"[{i}/{len(benchmarks)}] {b.module}: no reduced size; skipped by --quick", flush=True)
            continue
        args = [*(b.quick if FLAGS.quick else b.full)]
        if results_dir != os.path.abspath(RESULTS_DIR):  # the default stays out of the recorded command
            args += ["--results-dir", results_dir]
        print(f"[{i}/{len(benchmarks)}] python -m {b.module} {' '.join(args)}", flush=True)
        start = time.monotonic()
        code = subprocess.run([sys.executable, "-m", b.module, *args], cwd=ROOT, env=env).returncode
        records.append({"module": b.module, "args": args, "seconds": time.monotonic() - start, "exit_code": code})
        print(f"[{i}/{len(benchmarks)}] {b.module}: {'done' if code == 0 else f'FAILED (exit {code})'} in "
              f"{records[-1]['seconds']:.0f} s", flush=True)
        if code != 0:
            failed.append(b.module)
    result = {"quick": FLAGS.quick, "benchmarks": records, "seconds": time.monotonic() - total}
    run.write(os.path.join(results_dir, result_file(FLAGS.quick)), result)
    print(render(result), flush=True)
    if FLAGS.report:
        from benchmarks import report

        changed = report.update(os.path.abspath(FLAGS.readme), results_dir)
        print(f"{FLAGS.readme}: " + (f"rendered {', '.join(changed)}" if changed else "no region changed"))
    if failed:
        print(f"error: {len(failed)} benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    define_flags()
    run_cli(main)
