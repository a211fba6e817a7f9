"""Model build time, before vs after a change: L1/L3/L7 built by two checkouts, interleaved.

    python -m benchmarks.build_time [--before ed4c180] [--models l1,l3,l7] [--rounds 5]

`--before`'s committed tree is exported (`git archive`) into a temporary directory; this
checkout is "after". After one untimed build per (model, side) (the exported tree compiles its
.pyc files then), each round starts one fresh Python per (model, side), alternating which
side goes first, imports `ef_keras` from that tree (not timed) and times
`create_model(name)` (any registered variant, V1 or V2): the cost a user pays to get a model, graph construction and weight
creation included. Medians and p10 per side and their ratio (after / before) go to stdout and
benchmarks/results/build_time.json. The goal (`benchmarks/goals.json`, `build_time_ratio`):
no regression above 10 %. On this shared machine absolute seconds move between hours; only
the interleaved ratio is meaningful.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from absl import flags

from benchmarks import ROOT, define_results_dir_flag, finish, goals
from benchmarks.checkout import export_commit, short_commit
from ef_keras import provenance, timing
from ef_keras.cli import run as run_cli

FLAGS = flags.FLAGS
RESULT = "build_time.json"

_BUILD = """
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, {root!r})
import ef_keras
assert ef_keras.__file__.startswith({root!r}), ef_keras.__file__
build = getattr(ef_keras, "create_model", ef_keras.EfficientFormer)  # 0.1 has no registry; V1 names build either way
start = time.perf_counter()
build({name!r})
print(time.perf_counter() - start)
"""


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_string("before", "ed4c180", "Git revision to compare against (0.1 state).")
    flags.DEFINE_list("models", ["l1", "l3", "l7"], "Variants to build.")
    flags.DEFINE_integer("rounds", 5, "Builds per model and side.", lower_bound=1)
    define_results_dir_flag()


def build_seconds(root: str, name: str) -> float:
    """Seconds to build `name` in a fresh Python importing ef_keras from the tree at `root`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", _BUILD.format(root=root, name=name)], capture_output=True,
                         text=True, check=True, cwd=tempfile.gettempdir(), env=env)
    return float(out.stdout.strip().splitlines()[-1])


def summary(seconds) -> dict:
    """Median and p10 (the project's percentile) of per-build seconds."""
    p10, median = timing.percentile(seconds, [10, 50])
    return {"median_s": float(median), "p10_s": float(p10)}


def render(result: dict) -> str:
    """The README table and verdict of a build_time result."""
    before = result["before"]
    lines = [f"| model | 0.1 ({before}) median / p10 s | this tree median / p10 s | this / 0.1 median (p10) "
             "| this / 0.1 per round, min – max |", "|---|---:|---:|---:|---:|"]
    verdicts = []
    for r in result["rows"]:
        b, a = r["before"], r["after"]
        per_round = [x / y for x, y in zip(r["after_s"], r["before_s"])]
        lines.append(f"| {r['model'].upper()} | {b['median_s']:.2f} / {b['p10_s']:.2f} | {a['median_s']:.2f} / "
                     f"{a['p10_s']:.2f} | {r['ratio_median']:.2f} ({r['ratio_p10']:.2f}) "
                     f"| {min(per_round):.2f} – {max(per_round):.2f} |")
        shown = f"{r['ratio_median']:.2f}"
        verdicts.append(f"{r['model'].upper()} {goals.verdict('build_time_ratio', r['ratio_median'], shown)}")
    goal = goals.goal("build_time_ratio")
    return ("\n".join(lines) + f"\n\n{result['rounds']} rounds. Goal ({goal.what} {goal.bound}): "
            + "; ".join(verdicts) + ".")


def main(argv):
    del argv
    run = provenance.start()
    before = short_commit(FLAGS.before)
    with tempfile.TemporaryDirectory() as tmp:
        sides = {"before": export_commit(before, os.path.join(tmp, "before")), "after": ROOT}
        times = {(m, s): [] for m in FLAGS.models for s in sides}
        for m in FLAGS.models:  # untimed: the exported tree compiles its .pyc files on its first import
            for side in sides.values():
                build_seconds(side, m)
        for r in range(FLAGS.rounds):
            for m in FLAGS.models:
                for side in (("before", "after") if r % 2 == 0 else ("after", "before")):
                    times[(m, side)].append(build_seconds(sides[side], m))
            print(f"round {r + 1}/{FLAGS.rounds} done", flush=True)
    rows = []
    for m in FLAGS.models:
        b, a = summary(times[(m, "before")]), summary(times[(m, "after")])
        rows.append({"model": m, "before": b, "after": a, "ratio_median": a["median_s"] / b["median_s"],
                     "ratio_p10": a["p10_s"] / b["p10_s"], "before_s": times[(m, "before")],
                     "after_s": times[(m, "after")]})
    result = {"before": before, "rounds": FLAGS.rounds, "rows": rows}
    return finish(run, RESULT, result, render)


if __name__ == "__main__":
    define_flags()
    run_cli(main)
