"""Renders the README's results regions from the committed result files.

    python -m benchmarks.report            # rewrite the regions of README.md from benchmarks/results/
    python -m benchmarks.report --check    # exit 1, naming them, if any region differs

A region is the text between `<!-- results:NAME begin -->` and `<!-- results:NAME end -->`.
Its body is `benchmarks.registry.REGIONS[NAME].render(result)` of the region's result file,
followed by one line saying where it came from: the file, the command, the commit (and
"dirty" when the tree had uncommitted changes), the date and the host's load. Every number in
a region therefore comes from a file; prose outside the regions may interpret them.

Bad input, one line each (`ReportError`, or `ResultFileError` for a file without its header):
a region whose result file is missing, a region name the registry does not know, a begin
marker without its end.
"""

from __future__ import annotations

import os
import re

from absl import flags

from benchmarks import RESULTS_DIR, ROOT
from ef_keras import provenance
from ef_keras.cli import run as run_cli
from ef_keras.errors import EfKerasError

FLAGS = flags.FLAGS
README = os.path.join(ROOT, "README.md")
_MARKER = re.compile(r"<!-- results:([A-Za-z0-9_.-]+) (begin|end) -->")


class ReportError(EfKerasError):
    """A README region that cannot be rendered (missing file, unknown name, unmatched marker)."""


def define_flags():
    """Defines this tool's flags (importing the module defines none)."""
    flags.DEFINE_string("readme", README, "The Markdown file whose regions are rendered.")
    flags.DEFINE_string("results-dir", RESULTS_DIR, "Where the result files are.")
    flags.DEFINE_bool("check", False, "Only compare: exit 1 if a region differs from what the files give.")


def regions(text: str, where: str = "README.md") -> list[tuple[str, int, int]]:
    """(name, start, end) of each region's body in `text` (the offsets just inside its markers)."""
    found, open_name, open_end = [], None, 0
    for m in _MARKER.finditer(text):
        name, kind = m.groups()
        if kind == "begin":
            if open_name is not None:
                raise ReportError(f"{where}: region {open_name!r} has no end marker before {name!r} begins; "
                                  f"add <!-- results:{open_name} end -->")
            open_name, open_end = name, m.end()
        else:
            if open_name != name:
                raise ReportError(f"{where}: end marker of region {name!r} without its begin marker")
            found.append((name, open_end, m.start()))
            open_name = None
    if open_name is not None:
        raise ReportError(f"{where}: region {open_name!r} has no end marker; add <!-- results:{open_name} end -->")
    names = [name for name, _, _ in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ReportError(f"{where}: region {twice[0]!r} appears twice; each region is rendered in one place")
    return found


def stamp(result_file: str, header: dict) -> str:
    """One line: where a region's numbers came from (file, command, commit and dirty flag, date, host)."""
    git, host = header["git"], header["host"]
    if git.get("commit"):
        commit = f"commit `{git['commit'][:7]}`" + (" **dirty** (uncommitted changes)" if git.get("dirty") else "")
    else:
        commit = "an installed copy (no commit)"
    load = host["load_average_1min"]
    steal = host.get("cpu_steal_percent")
    return (f"<sub>`benchmarks/results/{result_file}`: `{header['command']}`, {commit}, {header['date'][:10]}, "
            f"{host['cpu_model']} ({host['cores']} cores), 1-min load {load['before']} before / {load['after']} after"
            + (f", CPU steal {steal:.1f} %" if steal is not None else "") + ".</sub>")


def render_region(name: str, results_dir: str = RESULTS_DIR) -> str:
    """The body of region `name` (with surrounding blank lines) from the files in `results_dir`."""
    from benchmarks import registry

    if name not in registry.REGIONS:
        raise ReportError(f"README region {name!r} is not in benchmarks/registry.py (known: "
                          f"{', '.join(registry.REGIONS)}); add a Region there or remove the markers")
    region = registry.REGIONS[name]
    if region.result is None:
        return f"\n{region.render(None)}\n"
    path = os.path.join(results_dir, region.result)
    if not os.path.isfile(path):
        raise ReportError(f"README region {name!r} needs {path}, which is missing; run "
                          f"`{registry.producer(region.result)}` (or `python -m benchmarks.run_all --quick`)")
    header, result = provenance.read_result(path)
    return f"\n{region.render(result)}\n\n{stamp(region.result, header)}\n"


def render(text: str, results_dir: str = RESULTS_DIR, where: str = "README.md") -> str:
    """`text` with every region's body rendered from the files in `results_dir`."""
    out, last = [], 0
    for name, start, end in regions(text, where):
        out += [text[last:start], render_region(name, results_dir)]
        last = end
    return "".join(out) + text[last:]


def differing(text: str, results_dir: str = RESULTS_DIR, where: str = "README.md") -> list[str]:
    """Names of the regions of `text` whose body differs from what the files render."""
    return [name for name, start, end in regions(text, where) if text[start:end] != render_region(name, results_dir)]


def update(readme: str = README, results_dir: str = RESULTS_DIR) -> list[str]:
    """Rewrites `readme`'s regions from `results_dir` (atomically); returns the names that changed."""
    from ef_keras.output import write_text

    with open(readme, encoding="utf-8") as f:
        text = f.read()
    changed = differing(text, results_dir, readme)
    if changed:
        write_text(readme, render(text, results_dir, readme))
    return changed


def main(argv):
    del argv
    readme, results_dir = os.path.abspath(FLAGS.readme), os.path.abspath(FLAGS["results-dir"].value)
    if FLAGS.check:
        with open(readme, encoding="utf-8") as f:
            stale = differing(f.read(), results_dir, readme)
        if stale:
            print(f"{readme}: regions differ from {results_dir}: {', '.join(stale)}; run python -m benchmarks.report")
            return 1
        print(f"{readme}: every region matches {results_dir}")
        return 0
    changed = update(readme, results_dir)
    print(f"{readme}: " + (f"rendered {', '.join(changed)}" if changed else "every region was already up to date"))
    return 0


if __name__ == "__main__":
    define_flags()
    run_cli(main)
