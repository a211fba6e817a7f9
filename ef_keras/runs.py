"""Resumable runs: "resume only if the settings match", checkpoints and TensorBoard scalars, once each.

Every tool that can be killed and re-run into the same place follows one rule: the settings
that decide its result are recorded with the first run, and a later run resumes only if its
settings are the same; otherwise it stops before touching anything, with one line naming
each setting that differs (old and new value) and what to do.

- Run directories (training, supernet training, slimming) record their settings in
  `<out>/run.json` (`resume_settings` / `record_settings`).
- Documents that carry their own provenance (a LUT, a micro-model manifest) compare the
  relevant part of it with `check_same_settings`, the same comparison.
- Settings are compared as JSON (tuples equal lists); nested dicts are compared key by key
  so a message says `recipe.base_lr`, not the whole recipe. Inputs named by path whose
  content matters (a supernet's weights) enter the settings as `files_sha256`.
- `Checkpoints` is the one checkpoint scheme (`tf.train.CheckpointManager`: data files
  first, then the index that names them, so a killed save leaves the previous checkpoint
  as the newest) for training and supernet training.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

from ef_keras.checks import read_json
from ef_keras.output import write_json

#: The settings record in a run directory.
SETTINGS_FILE = "run.json"
#: How many differing settings a message lists before "and N more".
_SHOWN = 4


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _flatten(settings: Mapping, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_settings(recorded: Mapping, settings: Mapping) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (recorded value, new value)} of every setting that differs (missing = None)."""
    old, new = _flatten(_as_json(dict(recorded))), _flatten(_as_json(dict(settings)))
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def check_same_settings(recorded: Mapping, settings: Mapping, *, where: str, error: type[Exception],
                        hint: str) -> None:
    """Raises `error` when `settings` differ from what `where` recorded, naming each difference."""
    changed = changed_settings(recorded, settings)
    if changed:
        shown = [f"{k}={old!r} there, {new!r} now" for k, (old, new) in list(changed.items())[:_SHOWN]]
        more = f" and {len(changed) - _SHOWN} more" if len(changed) > _SHOWN else ""
        raise error(f"{where} holds a run with other settings ({'; '.join(shown)}{more}); {hint}")


def resume_settings(out_dir: str, settings: Mapping, *, error: type[Exception], flag: str = "--out") -> bool:
    """True when `out_dir` holds a run with these settings, False when it holds none; `error` when they differ."""
    path = os.path.join(out_dir, SETTINGS_FILE)
    if not os.path.exists(path):
        return False
    check_same_settings(read_json(path, "run record", error), settings, where=out_dir, error=error,
                        hint=f"resume with the same settings or use another {flag}")
    return True


def record_settings(out_dir: str, settings: Mapping) -> None:
    """Writes the settings record of a new run (atomically) into the existing `out_dir`."""
    write_json(os.path.join(out_dir, SETTINGS_FILE), _as_json(dict(settings)))


def files_sha256(*paths: str) -> str:
    """One sha256 over the contents of `paths` (in order): a setting for inputs given by path."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class Checkpoints:
    """The checkpoints of a run: `tf.train.Checkpoint` of `objects`, the newest `keep` kept in `directory`.

    `save(step)` writes checkpoint `ckpt-<step>`; `restore()` loads the newest one (if any)
    and checks that every object of this run found its values, raising `error` with what to
    do when the file is unreadable or belongs to another model. `restore_from`: a directory whose
    newest checkpoint `restore()` prefers (a multi-worker run's chief's, so that every worker
    resumes from the same step; `directory` when it holds none or cannot be read).
    """

    def __init__(self, directory: str, *, keep: int, error: type[Exception], restore_from: str | None = None,
                 **objects):
        import tensorflow as tf

        self.directory, self.error, self.restore_from = directory, error, restore_from
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)

    @property
    def latest(self) -> str | None:
        """The newest checkpoint's path prefix, or None."""
        return self.manager.latest_checkpoint

    def save(self, step: int) -> str:
        return self.manager.save(checkpoint_number=step)

    def restore(self) -> bool:
        """Loads the newest checkpoint; False when there is none."""
        import tensorflow as tf

        path = (tf.train.latest_checkpoint(self.restore_from) if self.restore_from else None) or self.latest
        if path is None:
            return False
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError, IndexError) as e:  # IndexError: truncated file
            raise self.error(f"cannot resume from checkpoint {path}: {str(e).splitlines()[0][:200]}. It is left as "
                             "it is; delete it (and its 'checkpoint' index entry) to resume from an older one, or "
                             "use a new --out") from e
        return True


def summary_scalar(name: str, value: float) -> None:
    """A TensorBoard scalar without the tensorboard package (TF 2.21 no longer installs it).

    Same record as `tensorboard.summary.scalar`: a float32 scalar tagged for the "scalars"
    plugin; call inside `writer.as_default(step=...)`.
    """
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(name, tf.constant(value, tf.float32), metadata=metadata)
