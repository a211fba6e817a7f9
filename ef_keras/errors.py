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


def run(main, user_errors: tuple = (), argv=None) -> None:
    """`absl.app.run` for our CLIs: one-line flag errors, then `cli_main(main, user_errors)`."""
    from absl import app

    app.run(cli_main(main, user_errors), argv=argv, flags_parser=parse_flags)
