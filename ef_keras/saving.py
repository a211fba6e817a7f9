"""Whole-model `.keras` files: written through the project's writer, read with one-line errors.

`save_model` writes atomically by `ef_keras.output`'s rule (an existing directory is never
replaced). `load_model` first registers every Keras class the project saves (the model families
register when `ef_keras` is imported, the dense tasks' `SemanticFPN` and `PyramidBackbone` here),
so any `.keras` file ef_keras wrote loads, and it says in one line whether the file is missing, a
directory, truncated or not a Keras model at all. Keras itself answers a truncated archive with
"File not found" (it falls back to the legacy formats), which sent users looking for the wrong
problem.
"""

from __future__ import annotations

import os
import zipfile

from ef_keras.errors import EfKerasError
from ef_keras.output import writing

SUFFIX = ".keras"


class ModelFileError(EfKerasError):
    """A `.keras` file that cannot be read, or a path that cannot take one."""


def save_model(model, path, *, overwrite: bool = True) -> None:
    """`model.save(path)` atomically: never a partial file, never over a directory (`ef_keras.output`)."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).endswith(SUFFIX):
        raise ModelFileError(f"a Keras model file must end in {SUFFIX}, got {path!r}")
    with writing(path, overwrite=overwrite, error=ModelFileError) as tmp:
        model.save(tmp)


def load_model(path, *, what: str = "model", error: type[EfKerasError] = ModelFileError):
    """The Keras model in the `.keras` file `path` (not compiled); `error` (one line) when it cannot be read.

    Args:
        what: how messages name the file ("teacher", "--init-checkpoint", ...).
        error: the error class to raise (a tool's own EfKerasError subclass).
    """
    import keras

    import ef_keras.tasks.segmentation  # noqa: F401  (registers SemanticFPN and PyramidBackbone)

    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise error(f"no {what} file given; pass the path of a {SUFFIX} file")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise error(f"{what} {path} is a directory; give a {SUFFIX} file")
    if not os.path.isfile(path):
        raise error(f"{what} {path} does not exist; check the path")
    if not path.endswith(SUFFIX):
        raise error(f"{what} {path} is not a {SUFFIX} file; save the model with model.save('NAME{SUFFIX}')")
    if not zipfile.is_zipfile(path):
        raise error(f"{what} {path} is not a complete {SUFFIX} archive (truncated or corrupt); save it again")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:  # zip, h5 and deserialisation errors of many types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise error(f"cannot load {what} {path} ({type(e).__name__}: {first}); is it a complete {SUFFIX} file "
                    "written by Keras 3?") from e
