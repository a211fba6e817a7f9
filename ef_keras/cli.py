"""The one way every command-line tool runs and reports a failure.

`cli_main` wraps a CLI's `main(argv)`, and `run` is `absl.app.run` with it: our errors
(`ef_keras.errors.EfKerasError`) and the user's environment errors (a path that is missing, a
directory, unreadable or read-only) become one `error: ...` line and exit code 1; anything else
is a bug in our code and keeps its full traceback. `EF_KERAS_TRACEBACK=1` shows the traceback
(with the chained cause) for every error. Flags may be spelled with dashes or underscores.
absl's log level starts at WARNING (TensorFlow's checkpoint saver, the converters and tf2onnx
log every save and pass at INFO; TensorFlow's Python logger notes retracing), unless
`--verbosity` is given.
"""

from __future__ import annotations

import functools
import os
import sys

from ef_keras.errors import EfKerasError, is_environment_error, one_line


def cli_main(main, user_errors: tuple = ()):
    """Wraps `main(argv) -> exit code` so our errors and environment errors print one line and exit 1.

    `user_errors`: further error classes of bad input that are not (yet) EfKerasErrors.
    """

    @functools.wraps(main)
    def wrapped(argv):
        import logging as python_logging

        from absl import flags, logging

        if "verbosity" in flags.FLAGS and not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
            python_logging.getLogger("tensorflow").setLevel(python_logging.WARNING)  # retracing notices
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
