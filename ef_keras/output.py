"""Writing outputs so that nothing the user owns is ever deleted, no partial file ships and no temp file stays.

Every file the project writes goes through here: checkpoints (`ef_keras.save_checkpoint`), `.keras`
models, converted models, LUTs and manifests, plots, JSON / CSV / Markdown results.

- `writing(target)` yields a hidden temp path beside `target` (same directory, so the rename is
  atomic) and `commit` renames it into place when the block succeeds; on failure it is removed.
  `write_text` / `write_json` are `writing` for text.
- The overwrite rule, the same for the Python API and the CLIs' `--overwrite`: an existing regular
  file (or symlink) is replaced only with `overwrite` (the CLIs default to False, the Python
  writers to True, as `keras.Model.save`); an existing *directory* is replaced only when the
  caller's `ours(path)` recognises it as its own kind of output (a Core ML `.mlpackage`,
  `is_mlpackage`) and `overwrite` is given. Any other directory is never renamed or deleted: the
  writer raises `OutputError` before writing anything.
- `check_output` runs the same rule (plus the extension and a writable directory) before a
  tool's work starts, so bad paths fail in a second, not after a conversion.
- `scratch_directory` is where intermediates go (e.g. the SavedModel a TFLite conversion is made
  from): beside the output being made, or under the project's cache directory when there is
  none, never in the system temp directory.
- Temp files and scratch directories are named `.NAME.tmp-PID-XXXXXXXX[.EXT]`. Every `writing`,
  `scratch_directory` and `check_output` first removes those in its directory whose process is
  gone (what a killed run left), and an `atexit` handler removes the ones this process still
  holds when it exits (`ef_keras.cli` turns SIGTERM into such an exit).
- `run_directory` creates a run directory and removes it again, if it is still empty, when
  the run fails before writing anything.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import uuid

from ef_keras.errors import EfKerasError

_TMP = ".tmp-"
#: A temp file or scratch directory of ours: `.NAME.tmp-PID-8 hex digits[.EXT]`.
_TEMP_NAME = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]{8}(\.[^/]*)?$")
#: Temp paths this process is writing now (neither stale nor to be left at exit).
_LIVE: set[str] = set()


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


def remove_stale_temps(directory: str) -> list[str]:
    """Deletes the temp files and scratch directories in `directory` whose process no longer runs.

    Our own PID on a path we are not writing is a killed process's whose PID we were given again.
    Returns what it removed.
    """
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _TEMP_NAME.match(name)
        path = os.path.join(directory, name)
        if match and path not in _LIVE and (int(match.group(1)) == os.getpid() or not _pid_alive(int(match.group(1)))):
            remove(path)
            removed.append(path)
    return removed


def is_mlpackage(path: str) -> bool:
    """A Core ML package directory as coremltools writes it (it holds a Manifest.json)."""
    return path.endswith(".mlpackage") and os.path.isfile(os.path.join(path, "Manifest.json"))


def _check_replaceable(path: str, overwrite: bool, ours, what: str, flag: str, error) -> None:
    """The overwrite rule (module docstring) for an existing `path`; raises `error` before anything is written."""
    if not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        if ours is None or not ours(path):
            raise error(f"{path} is a directory this tool did not write; it is left as it is and nothing was "
                        f"written. Give a file path (--overwrite replaces only files or a {what} it wrote): "
                        f"choose another {flag}")
    elif not (os.path.isfile(path) or os.path.islink(path)):
        raise error(f"{path} is not a regular file; choose another {flag}")
    if not overwrite:
        raise error(f"{path} already exists; pass --overwrite (overwrite=True) to replace it")


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
    if path is None or not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
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
    remove_stale_temps(parent)
    _check_replaceable(path, overwrite, ours, " or ".join(suffixes) or "package", flag, error)
    return path


def remove(path: str) -> None:
    """Deletes a temp file or temp directory if it exists (only ever called on our temp paths)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def commit(tmp: str, target: str, *, ours=None, error: type[EfKerasError] = OutputError) -> None:
    """Moves a finished temp output (file or directory) into place, by the overwrite rule.

    An existing directory at `target` is replaced only when `ours(target)` says this tool wrote
    it; otherwise `error` is raised and it stays as it is. A directory cannot replace an existing
    path in one rename, so the old one is first renamed aside (as a temp path, removed by a later
    run if this one dies) and deleted only after the new one is in place.
    """
    target_is_dir = os.path.isdir(target) and not os.path.islink(target)
    if target_is_dir and (ours is None or not ours(target)):
        raise error(f"{target} is a directory this tool did not write; it is left as it is and nothing was written. "
                    "Choose another path")
    if target_is_dir or (os.path.isdir(tmp) and os.path.lexists(target)):
        aside = temp_path(target)
        _LIVE.add(aside)
        try:
            os.replace(target, aside)
            os.replace(tmp, target)
            remove(aside)
        finally:
            _LIVE.discard(aside)
    else:
        os.replace(tmp, target)


@contextlib.contextmanager
def writing(target, *, overwrite: bool = True, ours=None, error: type[EfKerasError] = OutputError):
    """Yields a temp path beside `target`; on success it is renamed to `target`, on failure removed.

    Args:
        overwrite: replace an existing file (default True, as `keras.Model.save`); False refuses.
        ours: predicate recognising a directory output of the caller's kind, which may be replaced;
            any other directory at `target` is refused before anything is written.
        error: the error class to raise (a tool's own EfKerasError subclass).
    """
    target = os.path.abspath(os.fspath(target))
    _check_replaceable(target, overwrite, ours, "package", "path", error)
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise error(f"cannot write {target}: directory {parent} does not exist; create it or choose another path")
    remove_stale_temps(parent)
    tmp = temp_path(target)
    _LIVE.add(tmp)
    try:
        yield tmp
        commit(tmp, target, ours=ours, error=error)
    finally:
        remove(tmp)
        _LIVE.discard(tmp)


def write_text(path: str, text: str, *, overwrite: bool = True) -> None:
    """Writes a text file atomically (never a half-written file; never over a directory)."""
    with writing(path, overwrite=overwrite) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str, data, indent: int = 2, *, overwrite: bool = True) -> None:
    """Writes JSON atomically, with a final newline."""
    write_text(path, json.dumps(data, indent=indent, default=str) + "\n", overwrite=overwrite)


def cache_directory(*parts: str) -> str:
    """`$XDG_CACHE_HOME/ef_keras/<parts>` (default `~/.cache/ef_keras/...`): the project's cache, not created."""
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ef_keras", *parts)


@contextlib.contextmanager
def scratch_directory(beside: str | None = None):
    """Yields a new private directory for intermediate files, removed afterwards (also on failure).

    It is made beside `beside` (the output being made: same filesystem, and a killed run's
    leftover sits where the user looks and is removed by the next run writing there), or under
    `cache_directory("scratch")` when there is no output; never in the system temp directory.
    """
    base = os.path.abspath(os.fspath(beside)) if beside else cache_directory("scratch", "work")
    parent = os.path.dirname(base)
    os.makedirs(parent, exist_ok=True)
    remove_stale_temps(parent)
    path = temp_path(base + ".work")
    _LIVE.add(path)
    try:
        os.mkdir(path)
        yield path
    finally:
        remove(path)
        _LIVE.discard(path)


@atexit.register
def _remove_live_temps() -> None:
    """At interpreter exit, removes the temp paths this process still holds (a block that never finished)."""
    for path in list(_LIVE):
        remove(path)
    _LIVE.clear()


def check_run_directory(path, flag: str = "--out") -> str:
    """Refuses an empty run directory path or one that exists as something else (a file); returns it absolute."""
    if path is None or not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise OutputError(f"no run directory given; pass {flag} DIR")
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
