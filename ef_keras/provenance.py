"""The one result-file format: every benchmark (and the search's main job) writes its JSON through here.

    from ef_keras import provenance
    run = provenance.start()                        # facts at the start: load, CPU counters, git state
    ...                                             # measure
    run.write("benchmarks/results/x.json", result)  # {"header": {...}, "result": result}, atomically
    header, result = provenance.read_result("benchmarks/results/x.json")

A reader cannot tell a measured number from a remembered one unless the number says where it
came from, so every result file starts with a header:

- `command`: how the run was started (`python -m benchmarks.x --flag v`);
- `git`: the commit of the checkout the code ran from, and whether its tree was `dirty`
  (uncommitted changes other than result files and Markdown prose, which do not change what
  is measured; `changed` lists up to 20 of them). An installed copy (no checkout) records
  `commit: null`, and its version is in `packages`;
- `date` (UTC, when the result was written) and `seconds` (the run's wall time);
- `host`: CPU model, cores, the 1-minute load average before and after, and the share of CPU
  time the hypervisor stole during the run (`/proc/stat`; null where it cannot be read);
- `packages`: the versions of the installed packages that decide what is measured;
- `statistics`: the statistic definitions (`ef_keras.timing.DEFINITIONS`), so a "p10" in the
  file means what the project's one percentile means.

`read_result` refuses a file without that header in one line (`ResultFileError`). This module
imports the standard library and `ef_keras.timing` (NumPy) only: no TensorFlow.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib import metadata
from typing import Any, Mapping, NamedTuple, Sequence

from ef_keras.errors import EfKerasError
from ef_keras.timing import DEFINITIONS

#: The header's `format` value; a reader refuses any other.
FORMAT = "ef-keras-result/1"
#: Keys every header has.
HEADER_KEYS = ("format", "command", "git", "date", "seconds", "host", "packages", "statistics")
#: Distributions whose versions decide what a benchmark measures (those installed are recorded).
PACKAGES = ("ef-keras", "numpy", "tensorflow", "tensorflow-cpu", "keras", "ai-edge-litert", "onnxruntime", "tf2onnx",
            "coremltools", "torch", "timm", "keras-hub")
#: Paths whose changes do not make a tree dirty: result files and prose do not change what is measured.
NOT_CODE = (":(exclude)benchmarks/results", ":(exclude,glob)**/*.md")
_MAX_CHANGED = 20


class ResultFileError(EfKerasError):
    """A result file that is missing, unreadable or lacks the provenance header."""


class Result(NamedTuple):
    """A result file as read: its header and its result."""

    header: dict
    result: Any


def checkout_root() -> str | None:
    """The git checkout this `ef_keras` was imported from, or None for an installed copy."""
    root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    try:
        top = subprocess.run(["git", "-C", root, "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    # A virtual environment inside a checkout is not that checkout: the package must sit at the top level.
    if top.returncode != 0 or os.path.realpath(top.stdout.strip()) != root:
        return None
    return root


def git_state(root: str | None = None) -> dict:
    """{"commit", "dirty", "changed"} of the checkout `root` (default: `checkout_root()`)."""
    root = root or checkout_root()
    if root is None:
        return {"commit": None, "dirty": None, "changed": [], "note": "not run from a git checkout"}

    def git(*args):
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, check=True).stdout

    changed = [line[3:] for line in git("status", "--porcelain", "--", ".", *NOT_CODE).splitlines() if line.strip()]
    return {"commit": git("rev-parse", "HEAD").strip(), "dirty": bool(changed), "changed": changed[:_MAX_CHANGED]}


def cpu_model() -> str:
    """The CPU's model name (`/proc/cpuinfo`), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_counters() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from `/proc/stat`, or None where it cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 8:
        return None
    return fields[7], sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """{distribution: version} of those of `names` that are installed (nothing is imported)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def command_line(argv: Sequence[str] | None = None) -> str:
    """How this process was started, as a user would retype it (`python -m benchmarks.x --runs 5`)."""
    argv = list(sys.argv if argv is None else argv)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if argv and spec is not None and spec.name and spec.name != "__main__":
        program = ["python", "-m", spec.name.removesuffix(".__main__")]
    elif argv:
        program = ["python", os.path.relpath(argv[0]) if os.path.isabs(argv[0]) else argv[0]]
    else:
        program = ["python"]
    return shlex.join(program + argv[1:])


class Run:
    """One run being recorded: the facts at its start, completed by `header()` at its end."""

    def __init__(self, packages: Sequence[str] = (), argv: Sequence[str] | None = None):
        self.command = command_line(argv)
        self.packages = tuple(dict.fromkeys((*PACKAGES, *packages)))
        self.git = git_state()
        self.load_before = _load()
        self._counters = _cpu_counters()
        self._start = time.monotonic()

    def header(self) -> dict:
        """The header as of now (load after, steal during the run, wall time so far)."""
        counters = _cpu_counters()
        steal = None
        if self._counters and counters and counters[1] > self._counters[1]:
            steal = round(100.0 * (counters[0] - self._counters[0]) / (counters[1] - self._counters[1]), 2)
        try:
            usable = len(os.sched_getaffinity(0))
        except AttributeError:
            usable = os.cpu_count()
        return {
            "format": FORMAT,
            "command": self.command,
            "git": self.git,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seconds": round(time.monotonic() - self._start, 1),
            "host": {"cpu_model": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable,
                     "machine": platform.machine(), "os": f"{platform.system()} {platform.release()}",
                     "python": platform.python_version(),
                     "load_average_1min": {"before": self.load_before, "after": _load()},
                     "cpu_steal_percent": steal},
            "packages": package_versions(self.packages),
            "statistics": dict(DEFINITIONS),
        }

    def write(self, path: str, result: Any) -> dict:
        """Writes `{"header": ..., "result": result}` to `path` atomically; returns that document."""
        from ef_keras.output import write_json

        document = {"header": self.header(), "result": result}
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_json(path, document)
        return document


def start(packages: Sequence[str] = (), argv: Sequence[str] | None = None) -> Run:
    """Starts recording a run; `packages` adds distributions to the recorded versions."""
    return Run(packages, argv)


def check_header(header: Mapping, where: str) -> None:
    """Raises ResultFileError unless `header` is a complete header of this format."""
    if not isinstance(header, Mapping) or header.get("format") != FORMAT:
        raise ResultFileError(f"{where} has no result header ({FORMAT}); it was not written by "
                              "ef_keras.provenance: re-run the benchmark that makes it")
    missing = [key for key in HEADER_KEYS if key not in header]
    if missing:
        raise ResultFileError(f"{where}'s result header lacks {', '.join(missing)}; re-run the benchmark that makes it")


def read_result(path: str) -> Result:
    """The header and result of a result file; one-line ResultFileError if it is missing or has no header."""
    from ef_keras.checks import read_json

    if not os.path.isfile(path):
        raise ResultFileError(f"result file {path} does not exist; run the benchmark that writes it")
    document = read_json(path, "result file", ResultFileError)
    if not isinstance(document, Mapping) or "header" not in document or "result" not in document:
        raise ResultFileError(f"{path} has no result header ({FORMAT}); it was not written by "
                              "ef_keras.provenance: re-run the benchmark that makes it")
    check_header(document["header"], path)
    return Result(dict(document["header"]), document["result"])
