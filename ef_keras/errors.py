"""The project's error base class and the one way every command-line tool reports a failure.

Every error our code raises for bad input derives from `EfKerasError` (a `ValueError`, so
`except ValueError` in callers keeps working): ConfigError, ModelArgumentError,
CheckpointError, TrainError, DeployError, OutputError, ... `cli_main` wraps a CLI's
`main(argv)`, and `run` is `absl.app.run` with it: our errors and the user's environment
errors (a path that is missing, a directory, unreadable or read-only) become one
`error: ...` line and exit code 1; anything else is a bug in our code and keeps its full
traceback. `EF_KERAS_TRACEBACK=1` shows the traceback (with the chained cause) for every error.
"""

from __future__ import annotations

import errno
import functools
import os
import sys


class EfKerasError(ValueError):
    """Bad input to ef-keras; the message says what was wrong and what to do."""


class InputError(EfKerasError):
    """A number, flag or argument outside what it may be (see `ef_keras.checks`)."""


class MissingExtraError(EfKerasError):
    """A feature needs a package of an extra that is not installed (the core install is lean)."""


#: pip's name of the packages whose import name differs.
_PIP_NAMES = {"PIL": "pillow", "sklearn": "scikit-learn", "tensorflow_datasets": "tensorflow-datasets",
              "ai_edge_litert": "ai-edge-litert"}


def require(module: str, extra: str, feature: str):
    """Imports and returns `module`, or raises MissingExtraError naming the extra that provides it.

    The core install (`pip install ef-keras`) holds only what models, layers, configs and
    checkpoint import need; data pipelines, converters and the search's tools live in the
    `data`, `deploy` and `search` extras. Their packages are imported where they are used,
    through this function, so a missing one is one line that says what to install.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or module.split(".")[0] != e.name.split(".")[0]:
            raise  # the package is there but one of its own imports is broken: a traceback helps
        package = e.name.split(".")[0]
        raise MissingExtraError(f"{feature} needs the {_PIP_NAMES.get(package, package)} package, which is not "
                                f'installed: pip install "ef-keras[{extra}]"') from e


#: errno values that mean the user's path or machine is wrong, not our code.
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS,
                                 errno.ENOSPC, errno.EDQUOT, errno.EEXIST, errno.ENOTEMPTY, errno.ENAMETOOLONG,
                                 errno.ELOOP, errno.EXDEV})


def is_environment_error(error: BaseException) -> bool:
    """True for an OSError about a named path the user gave or the machine's state (not a bug)."""
    return isinstance(error, OSError) and error.errno in _ENVIRONMENT_ERRNOS and error.filename is not None


def one_line(error: BaseException) -> str:
    """The error as one line of text, for `error: ...` output."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or type(error).__name__}; check the path and its permissions"
    text = " ".join(str(error).split())
    return text or type(error).__name__


def cli_main(main, user_errors: tuple = ()):
    """Wraps `main(argv) -> exit code` so our errors and environment errors print one line and exit 1.

    `user_errors`: further error classes of bad input that are not (yet) EfKerasErrors.
    """

    @functools.wraps(main)
    def wrapped(argv):
        try:
            return main(argv)
        except (EfKerasError, OSError, *user_errors) as e:
            if (isinstance(e, OSError) and not is_environment_error(e)) or os.environ.get("EF_KERAS_TRACEBACK"):
                raise
            print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
            return 1

    return wrapped


def parse_flags(argv):
    """absl's flag parsing with a one-line `error: ...` (exit 2) instead of its two-line FATAL message."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {one_line(e)} (see --helpshort)", file=sys.stderr, flush=True)
        sys.exit(2)


def dashed_argv(argv, flag_values=None):
    """argv with `--foo_bar[=v]` and `--nofoo_bar` rewritten to `--foo-bar[=v]` / `--nofoo-bar`.

    Our flags have dashed names (`--target-like`); the 0.1 search CLIs took underscores
    (`--target_like`), which keep working. Only names of defined flags are rewritten, so a
    value such as `--benchmark-arg --use_xnnpack=false` passes through unchanged.
    `flag_values`: where the flags are defined (default: absl's global FLAGS).
    """
    from absl import flags

    defined = flags.FLAGS if flag_values is None else flag_values
    out = list(argv[:1])
    for arg in argv[1:]:
        name, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        dashed = name.replace("_", "-")
        if "_" in name and (dashed in defined or (dashed.startswith("no") and dashed[2:] in defined
                                                  and defined[dashed[2:]].boolean)):
            arg = f"--{dashed}{eq}{value}"
        out.append(arg)
    return out


def run(main, user_errors: tuple = (), argv=None) -> None:
    """`absl.app.run` for our CLIs: either flag spelling, one-line flag errors, then `cli_main(main, user_errors)`."""
    from absl import app

    app.run(cli_main(main, user_errors), argv=dashed_argv(sys.argv if argv is None else argv),
            flags_parser=parse_flags)
