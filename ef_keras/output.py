"""Writing user-named outputs so that bad input never destroys anything and no partial file ships.

Every tool that writes a path the user named goes through here:

- `check_output` runs before any work: the name must end in the format's extension, the
  directory must exist and be writable, and an existing path needs `overwrite`, which
  replaces only a regular file (or a symlink) or a directory the same tool wrote (e.g. a
  `.mlpackage`, recognised by `is_mlpackage`). An arbitrary directory is never deleted.
- the output is written to a hidden temp path in the target's own directory,
  `.NAME.tmp-PID-XXXXXXXX.EXT` (same filesystem, so the rename is atomic), and `commit`
  renames it into place; `writing` does both and removes the temp file on failure.
- temp files left by an earlier run that was killed (its PID is gone) are removed by the
  next `check_output` / `writing` of the same target.
- `run_directory` creates a run directory and removes it again, if it is still empty, when
  the run fails before writing anything.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import uuid

from ef_keras.errors import EfKerasError

_TMP = ".tmp-"


class OutputError(EfKerasError):
    """An output path that cannot or may not be written."""


def _extension(base: str) -> str:
    return ".weights.h5" if base.endswith(".weights.h5") else os.path.splitext(base)[1]


def temp_path(target: str) -> str:
    """A hidden temp path beside `target` that keeps its extension (savers check it)."""
    parent, base = os.path.split(os.path.abspath(target))
    return os.path.join(parent, f".{base}{_TMP}{os.getpid()}-{uuid.uuid4().hex[:8]}{_extension(base)}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(target: str) -> list[str]:
    """Deletes temp files of `target` whose writing process no longer runs; returns what it removed."""
    parent, base = os.path.split(os.path.abspath(target))
    removed = []
    for path in glob.glob(os.path.join(glob.escape(parent), glob.escape(f".{base}{_TMP}") + "*")):
        pid = os.path.basename(path)[len(base) + 1 + len(_TMP):].split("-", 1)[0]
        # Our own PID here is a killed process's whose PID we were given again (we write one target at a time).
        if pid.isdigit() and (int(pid) == os.getpid() or not _pid_alive(int(pid))):
            remove(path)
            removed.append(path)
    return removed


def is_mlpackage(path: str) -> bool:
    """A Core ML package directory as coremltools writes it (it holds a Manifest.json)."""
    return path.endswith(".mlpackage") and os.path.isfile(os.path.join(path, "Manifest.json"))


def check_output(path, *, overwrite: bool = False, suffix: str | tuple[str, ...] | None = None, ours=None,
                 flag: str = "--out", error: type[EfKerasError] = OutputError) -> str:
    """Checks that `path` may be written before any work starts; returns it absolute.

    Args:
        overwrite: allow replacing an existing regular file, or a directory for which
            `ours(path)` is true (a directory this tool wrote).
        suffix: the extension(s) the format needs, e.g. ".onnx".
        ours: predicate recognising a directory output of this tool (e.g. `is_mlpackage`).
        flag: how the user named the path, for messages.
        error: the error class to raise (a tool's own EfKerasError subclass).
    """
    if not path:
        raise error(f"no output path given; pass {flag} PATH")
    path = os.path.abspath(os.fspath(path))
    suffixes = (suffix,) if isinstance(suffix, str) else tuple(suffix or ())
    if suffixes and not path.endswith(suffixes):
        raise error(f"{flag} {path} does not end in {' or '.join(suffixes)}, the extension of this format; "
                    f"rename it, e.g. {os.path.splitext(os.path.basename(path))[0]}{suffixes[0]}")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise error(f"output directory {parent} does not exist; create it or choose another {flag}")
    probe = temp_path(path)
    try:  # a real write: os.access says yes to root even on read-only or special filesystems
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as e:
        raise error(f"output directory {parent} is not writable ({e.strerror}); choose another {flag}") from e
    remove_stale_temps(path)
    if os.path.lexists(path):
        if not overwrite:
            raise error(f"{path} already exists; pass --overwrite (overwrite=True) to replace it")
        if os.path.isdir(path) and not os.path.islink(path):
            if ours is None or not ours(path):
                raise error(f"{path} is a directory this tool did not write; --overwrite replaces only files "
                            f"(or a {' or '.join(suffixes) or 'package'} it wrote). Choose another {flag}")
        elif not (os.path.isfile(path) or os.path.islink(path)):
            raise error(f"{path} is not a regular file; choose another {flag}")
    return path


def remove(path: str) -> None:
    """Deletes a temp file or temp directory if it exists (only ever called on our temp paths)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def commit(tmp: str, target: str) -> None:
    """Moves a finished temp output (file or directory) into place.

    A directory cannot replace an existing path in one rename, so the old one is first
    renamed aside (as a temp path, cleaned up by a later run if this one dies) and deleted
    only after the new one is in place.
    """
    if (os.path.isdir(tmp) and os.path.lexists(target)) or (os.path.isdir(target) and not os.path.islink(target)):
        aside = temp_path(target)
        os.replace(target, aside)
        os.replace(tmp, target)
        remove(aside)
    else:
        os.replace(tmp, target)


@contextlib.contextmanager
def writing(target: str):
    """Yields a temp path beside `target`; on success it is renamed to `target`, on failure removed."""
    remove_stale_temps(target)
    tmp = temp_path(target)
    try:
        yield tmp
        commit(tmp, target)
    finally:
        remove(tmp)


def write_text(path: str, text: str) -> None:
    """Writes a text file atomically (never a half-written file)."""
    with writing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str, data, indent: int = 2) -> None:
    """Writes JSON atomically, with a final newline."""
    write_text(path, json.dumps(data, indent=indent, default=str) + "\n")


def check_run_directory(path, flag: str = "--out") -> str:
    """Refuses a run directory path that exists as something else (a file); returns it absolute."""
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OutputError(f"{flag} {path} exists and is not a directory; give a directory path (it holds the run)")
    return path


@contextlib.contextmanager
def run_directory(path: str, flag: str = "--out"):
    """Creates the run directory `path` (parents too); if the run fails, removes what it created and left empty."""
    path = check_run_directory(path, flag)
    created = []
    head = path
    while not os.path.exists(head):
        created.append(head)
        head = os.path.dirname(head)
    os.makedirs(path, exist_ok=True)
    try:
        yield path
    except BaseException:
        if created:  # rmdir refuses a directory with anything in it, so only empty ones go
            for root, _, _ in os.walk(created[-1], topdown=False):
                with contextlib.suppress(OSError):
                    os.rmdir(root)
        raise
