"""The project's error base class, what counts as the user's error, and how an error reads as one line.

Every error our code raises for bad input derives from `EfKerasError` (a `ValueError`, so
`except ValueError` in callers keeps working): ConfigError, ModelArgumentError,
CheckpointError, TrainError, DeployError, OutputError, ... The command-line runner that turns
them into one `error: ...` line is `ef_keras.cli`.
"""

from __future__ import annotations

import errno


class EfKerasError(ValueError):
    """Bad input to ef-keras; the message says what was wrong and what to do."""


class InputError(EfKerasError):
    """A number, flag or argument outside what it may be (see `ef_keras.checks`)."""


class MissingExtraError(EfKerasError):
    """A feature needs a package of an extra that is not installed (the core install is lean)."""


#: pip's name of the packages whose import name differs.
_PIP_NAMES = {"PIL": "pillow", "sklearn": "scikit-learn", "tensorflow_datasets": "tensorflow-datasets",
              "ai_edge_litert": "ai-edge-litert", "keras_hub": "keras-hub"}


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


class BackendError(EfKerasError):
    """A tool that runs on TensorFlow only was called under another Keras backend (JAX, PyTorch)."""


def require_tensorflow_backend(feature: str) -> None:
    """Raises BackendError unless Keras runs on TensorFlow.

    Models, layers, checkpoint import and `.keras` files work under every Keras backend; the
    tools built on TensorFlow itself (tf.data training, `tf.distribute`, the TFLite / Core ML /
    ONNX converters, the LUT harness) do not, and say so in one line instead of a deep traceback.
    """
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise BackendError(f"{feature} runs on the TensorFlow backend only, and Keras is running on {backend}: "
                           "run it with KERAS_BACKEND=tensorflow")


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
