"""How long the README's two set-up installs take, before and after, and whether an existing TensorFlow stays alone.

    python -m benchmarks.install_time [--work /tmp/ef_install_time] [--before main] [--after HEAD]

Each environment is a fresh virtual environment with its own empty pip cache (`PIP_CACHE_DIR`
under --work), so every install downloads everything as a new user's first install does; the
network (about 90 MB/s here) is part of the time. The commits are taken with `git archive`, so
uncommitted changes are not measured. The environments, made in interleaved order (before,
after, before, after, beside):

- `before_all` / `after_all`: the main job's install, `pip install ".[all]"` as each commit's
  README says it (after: `-c constraints.txt`);
- `before_test` / `after_test`: the test command's install, `pip install ".[all,test]"` likewise;
- `beside`: `pip install tensorflow==<constraints' version>` first, as a TensorFlow user's
  environment is, then the after commit's `pip install ".[all]" -c constraints.txt`.

Per environment it records the install's wall seconds, site-packages MB, the number of
distributions, and which installed distributions provide the `tensorflow` package (a second one
would be written over the first). Prints a table with after/before ratios and writes
benchmarks/results/install_time.json. On a shared machine the seconds carry other jobs' load:
the result header records the load average before and after.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

from absl import flags

from benchmarks import define_results_dir_flag, finish
from benchmarks.checkout import before_after, export_commit
from benchmarks.import_cost import _run, install_size
from ef_keras import provenance
from ef_keras.cli import run as run_cli

FLAGS = flags.FLAGS
RESULT = "install_time.json"
#: name -> (commit role, extras, apply constraints.txt, pre-install tensorflow)
ENVIRONMENTS = {
    "before_all": ("before", "[all]", False, False),
    "after_all": ("after", "[all]", True, False),
    "before_test": ("before", "[all,test]", False, False),
    "after_test": ("after", "[all,test]", True, False),
    "beside": ("after", "[all]", True, True),
}
#: Prints the installed distributions whose files include the `tensorflow` package's __init__.py.
_TENSORFLOW_OWNERS = """
import importlib.metadata as md, json
print(json.dumps(sorted(d.metadata["Name"] for d in md.distributions()
                        if any(str(f) == "tensorflow/__init__.py" for f in (d.files or ())))))
"""


def tested_tensorflow(src: str) -> str:
    """The tensorflow version pinned in `src`/constraints.txt."""
    text = open(os.path.join(src, "constraints.txt"), encoding="utf-8").read()
    return re.search(r"^tensorflow==(\S+)$", text, re.M).group(1)


def make(path: str, src: str, extras: str, constrained: bool, tensorflow_first: bool) -> dict:
    """Makes the venv `path` and installs `src` as the README does; the seconds of each pip step."""
    env = {**os.environ, "PIP_CACHE_DIR": path + "-pip-cache", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run([sys.executable, "-m", "venv", path])
    pip = [os.path.join(path, "bin", "python"), "-m", "pip", "install", "-q"]
    seconds = {}
    if tensorflow_first:
        t0 = time.perf_counter()
        _run(pip + [f"tensorflow=={tested_tensorflow(src)}"], env=env, cwd=src)
        seconds["tensorflow_first_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _run(pip + ["." + extras] + (["-c", "constraints.txt"] if constrained else []), env=env, cwd=src)
    seconds["install_s"] = time.perf_counter() - t0
    owners = _run([os.path.join(path, "bin", "python"), "-c", _TENSORFLOW_OWNERS], cwd="/")
    return {**seconds, "tensorflow_distributions": json.loads(owners.stdout.strip().splitlines()[-1])}


def render(result: dict) -> str:
    """The README table of an install_time result."""
    env, commits = result["environments"], result["commits"]
    lines = [f"| install (fresh venv, empty pip cache) | before ({commits['before']}) | after ({commits['after']}) "
             "| after / before |", "|---|---:|---:|---:|"]
    for label, extras in (("main job: `pip install \".[all]\"`", "all"),
                          ("tests: `pip install \".[all,test]\"`", "test")):
        b, a = env[f"before_{extras}"], env[f"after_{extras}"]
        lines.append(f"| {label}, s | {b['install_s']:.0f} | {a['install_s']:.0f} | "
                     f"{a['install_s'] / b['install_s']:.2f} |")
        lines.append(f"| {label}, site-packages MB | {b['site_packages_mb']:.0f} | {a['site_packages_mb']:.0f} | "
                     f"{a['site_packages_mb'] / b['site_packages_mb']:.2f} |")
        lines.append(f"| {label}, distributions providing `tensorflow` | "
                     f"{', '.join(b['tensorflow_distributions'])} | {', '.join(a['tensorflow_distributions'])} | |")
    beside = env["beside"]
    lines.append(f"\nBeside an existing TensorFlow (`pip install tensorflow` first: {beside['tensorflow_first_s']:.0f} s, "
                 f"then `pip install \".[all]\" -c constraints.txt`: {beside['install_s']:.0f} s): the distributions "
                 f"providing `tensorflow` afterwards are {', '.join(beside['tensorflow_distributions'])}.")
    return "\n".join(lines)


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_string("work", "/tmp/ef_install_time", "where the virtual environments are made (one run each)")
    flags.DEFINE_string("before", "main", "the commit before the change")
    flags.DEFINE_string("after", "HEAD", "the commit after the change")
    define_results_dir_flag()


def main(argv):
    del argv
    run = provenance.start()
    work, commits = before_after(FLAGS.work, FLAGS.before, FLAGS.after)
    result = {"commits": commits, "environments": {}}
    for i, (name, (role, extras, constrained, tensorflow_first)) in enumerate(ENVIRONMENTS.items()):
        src = export_commit(commits[role], os.path.join(work, f"src-{commits[role]}"))
        path = os.path.join(work, f"{name}-{commits[role]}")
        if os.path.exists(path):
            raise SystemExit(f"error: {path} exists; give an empty --work (every install is timed from scratch)")
        print(f"[{i + 1}/{len(ENVIRONMENTS)}] {name}: pip install \".{extras}\" in {path}", flush=True)
        made = make(path, src, extras, constrained, tensorflow_first)
        result["environments"][name] = {**made, **install_size(path)}
        print(f"    {made['install_s']:.0f} s, tensorflow from {made['tensorflow_distributions']}", flush=True)
    return finish(run, RESULT, result, render)


if __name__ == "__main__":
    define_flags()
    run_cli(main)
