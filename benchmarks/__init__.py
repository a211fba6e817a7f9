"""The benchmark scripts. Run each from the repository root as a module, e.g.

    python -m benchmarks.build_time --rounds 5
    python -m benchmarks.run_all --quick        # every registered benchmark at reduced size, then the README
    python -m benchmarks.report                 # README results regions from benchmarks/results/*.json

Each script writes its result through `ef_keras.provenance` (one header: command, commit,
host, load, versions, statistics) into `RESULTS_DIR`, and renders its table with a
`render(result)` function that `benchmarks.report` also uses for the README.
"""

import os

#: The repository root (the benchmarks run from a checkout, never from an installed copy).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Where the committed result files live.
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")


def define_results_dir_flag():
    """Every benchmark's `--results-dir` (where its result file goes; `run_all` passes it)."""
    from absl import flags

    flags.DEFINE_string("results-dir", RESULTS_DIR, "Where the result file goes.")
    # checked when the flags are parsed, not after an hour of work when the result is written
    flags.register_validator("results-dir", os.path.isdir, message="no such directory; create it or choose another")


def define_timing_flags(runs: int, warmup: int, threads: int = 2):
    """The interleaved-timing flags of the deploy benchmarks: `--runs` rounds after `--warmup` calls, `--threads`."""
    from absl import flags

    flags.DEFINE_integer("runs", runs, "Timed rounds (every model once per round).", lower_bound=1)
    flags.DEFINE_integer("warmup", warmup, "Untimed runs per model first.", lower_bound=0)
    flags.DEFINE_integer("threads", threads, "LiteRT (and ONNX Runtime) threads.", lower_bound=1)


def finish(run, result_file: str, result, render) -> int:
    """Writes `result` with `run`'s header to `--results-dir`/`result_file`, prints `render(result)`; returns 0."""
    from absl import flags

    run.write(os.path.join(flags.FLAGS["results-dir"].value, result_file), result)
    print(render(result))
    return 0


def bar_chart(path: str, labels, values, xlabel: str, title: str, low=None, high=None, colors=None) -> None:
    """A horizontal bar per label (top to bottom), whiskers from `low` to `high` when given, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.5 * len(labels) + 1.4))
    ax.barh(range(len(labels)), values, color=colors, height=0.5)
    if low is not None:
        ax.errorbar(values, range(len(labels)), xerr=[[v - lo for v, lo in zip(values, low)],
                                                     [hi - v for v, hi in zip(values, high)]],
                    fmt="none", ecolor="black", capsize=3, lw=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
