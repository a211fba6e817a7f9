"""Host harness: times every manifest micro-model with the LiteRT interpreter (XNNPACK) into a LUT.

Protocol: by default every model of the manifest (every unit alone, every unit after its
context unit, every whole reference model) is loaded at once and timed in one rotation
(`ef_keras.timing.time_interleaved`): each round invokes every model once, in a freshly
shuffled order. So every model sees the same mixture of background load over the whole
session, and every invocation finds the caches the way hundreds of other models left them,
as a unit inside a network does (its weights evicted by the units before it), instead of
warm from its own previous call. Only `invoke()` is timed; inputs are set once. The default V1
space's rotation with its in-context models (663 models, 2.5 GB of them the 37 whole models)
held about 11 GB resident; `group_size` splits a manifest into rotations of at most that many
models (a context unit stays with the units timed after it).

Method (`measurement.method` in the LUT, `android_ios_bench.units`):

- "in_rotation" (default): a unit's entry is its own micro-model's time in the one rotation.
- "in_context": a unit's entry is the time of its context unit followed by the unit minus
  the time of the context unit alone, each statistic differenced, both from one rotation; the
  stem is timed alone. A difference at or below zero (a unit that is free within noise) is
  stored as `FLOOR_MS` with a note.
- "isolated": a unit's own time, in rotations of `group_size` models (small groups: warm caches).

The rotation times every model of the manifest, so when it holds the ".ctx" models too, a
LUT of either of the first two methods comes from one session (`entries_from_journal`).

Monotone rows: a unit should not get cheaper as it gets wider. After the rotation, every row
of the LUT (one unit kind at one resolution along its width; for downsamplings along Cin and
along Cout) is checked on the correction's statistic; two neighbours where the wider one is
more than `MONOTONE_TOLERANCE` cheaper are both re-timed, with twice the rounds, in a rotation
of the flagged units padded with other micro-models of the manifest to `RETIME_ROTATION`
models, up to `RETIME_PASSES` times. The padding models are anchors: the load of the moment
differs from the main rotation's, so every statistic of a re-timed unit is scaled by the
median ratio, over the anchors, of that statistic in the main rotation to the re-timing one
(`anchored_stats`). What is still not monotone then is stored as measured, with a note.

Resuming: the raw per-invocation timings go to a journal beside the LUT
(`timings_path(lut_out)`), written atomically every `ROUNDS_PER_SAVE` rounds; a re-run
finishes an interrupted rotation and measures only the models no complete rotation holds.
The LUT is written when every model is measured and every row checked. The journal stays:
it is the session's raw record.

Whole reference models in the manifest (kind "model", `export.reference_items`) are timed in
the same rotation as the units and stored as the LUT's `reference_models`; the correction is
then fitted on them (`android_ios_bench.refit.refit_correction`).
"""

from __future__ import annotations

import os
import platform
import time
from typing import Callable, Sequence

import numpy as np

from android_ios_bench import __version__
from android_ios_bench.correction import CORRECTION_STATISTIC
from android_ios_bench.refit import refit_correction
from android_ios_bench.lut import (LUTError, ManifestError, identity, load_lut, load_manifest, make_entry, new_lut,
                                   now_iso, read_json, save_lut)
from android_ios_bench.units import CONTEXT_METHOD, ISOLATED_METHOD, METHODS, ROTATION_METHOD
from deploy.common import litert_interpreter
from ef_keras import provenance, timing
from ef_keras.checks import check_int
from ef_keras.output import check_output, write_json
from ef_keras.runs import check_same_settings

RUNTIME_NAME = "litert"
DELEGATE = "xnnpack"
TIMINGS_FORMAT = "ef-keras-latency-timings"
#: Statistics an in-context entry carries (each the difference of the two models' statistic).
DIFFERENCED = ("median_ms", "p10_ms", "p90_ms", "mean_ms", "min_ms")
#: An in-context difference at or below zero is stored as this many ms (the schema needs > 0).
FLOOR_MS = 0.001
#: Neighbours in a row are flagged when the wider one is cheaper by more than this fraction of
#: the narrower one's time plus MONOTONE_FLOOR_MS.
MONOTONE_TOLERANCE = 0.03
MONOTONE_FLOOR_MS = 0.002
RETIME_PASSES = 2
#: Models per re-timing rotation (the flagged units, their contexts, and other micro-models as padding).
RETIME_ROTATION = 96
#: 0: every model in one rotation.
DEFAULT_GROUP_SIZE = 0
#: The journal is saved after every this many rounds of a rotation.
ROUNDS_PER_SAVE = 25


def _litert_version() -> str:
    return provenance.package_versions(("ai-edge-litert",)).get("ai-edge-litert", "unknown")


def host_device() -> dict:
    """Provenance of this machine: a stable name plus the CPU model and OS."""
    return {"name": f"host-{platform.machine()}-{os.cpu_count()}cpu", "model": provenance.cpu_model(),
            "os": f"{platform.system()} {platform.release()}", "arch": platform.machine()}


def load_interpreter(path: str, threads: int, seed: int = 0):
    """A LiteRT interpreter (default op resolver = XNNPACK on) with random float inputs set."""
    Interpreter = litert_interpreter()

    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(seed)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], rng.standard_normal(detail["shape"]).astype(detail["dtype"]))
    return interpreter


def time_interleaved(paths: Sequence[str], *, threads: int = 2, warmup: int = 5, runs: int = 50,
                     seed: int = 0) -> list[np.ndarray]:
    """Per-model invoke() times in ms: all loaded, warmed up, then timed in a new random order per round
    (`ef_keras.timing.time_interleaved`)."""
    interpreters = [load_interpreter(p, threads, seed) for p in paths]
    times = timing.time_interleaved({i: it.invoke for i, it in enumerate(interpreters)}, runs, warmup, seed=seed)
    return [times[i] for i in range(len(paths))]


# ----------------------------------------------------------------------------- groups
def plan_groups(entries: Sequence[dict], method: str, group_size: int, seed: int = 0) -> list[list[str]]:
    """The manifest keys timed together, rotation by rotation, in a seeded shuffled order.

    `group_size` 0 (or at least the number of entries): one rotation of everything. Otherwise,
    in_context: each context unit with the units timed after it and those units alone (split
    into rotations of at most `group_size`, the context unit in each); isolated units without
    a context family (the stems) and whole models fill mixed rotations. isolated: mixed rotations.
    """
    keys = [e["key"] for e in entries]
    by_key = {e["key"]: e for e in entries}
    contexts = {e["unit"]["context"] for e in entries if e["kind"] == "context"}
    missing = sorted(contexts - set(by_key)) if method == CONTEXT_METHOD else []
    if missing:
        raise ManifestError(f"context unit {missing[0]!r} is not in the manifest; re-export it "
                            "(python -m android_ios_bench.export --method in_context)")
    if not group_size or group_size >= len(keys):
        return [keys] if keys else []
    rng = np.random.default_rng(seed)
    loose = [e["key"] for e in entries if method != CONTEXT_METHOD or e["kind"] != "context"]
    groups: list[list[str]] = []
    if method == CONTEXT_METHOD:
        families: dict[str, list[str]] = {}
        for e in entries:
            if e["kind"] == "context":
                unit = e["key"][:-len(".ctx")]
                families.setdefault(e["unit"]["context"], []).append(e["key"])
                if unit in by_key and unit not in contexts:  # the unit alone, beside it (isolated figures)
                    families[e["unit"]["context"]].append(unit)
        in_family = {k for members in families.values() for k in members} | contexts
        loose = [k for k in loose if k not in in_family]
        size = max(1, group_size - 1)
        for ctx, members in families.items():
            groups += [[ctx] + members[i:i + size] for i in range(0, len(members), size)]
    rng.shuffle(loose)
    groups += [loose[i:i + group_size] for i in range(0, len(loose), group_size)]
    order = rng.permutation(len(groups))
    return [groups[i] for i in order]


# ----------------------------------------------------------------------------- journal
def timings_path(lut_out: str) -> str:
    """The timings journal beside a LUT: lut.json -> lut.timings.json."""
    root, _ = os.path.splitext(lut_out)
    return root + ".timings.json"


def _open_journal(path: str, fresh_identity: dict) -> dict:
    if not os.path.exists(path):
        return {"format": TIMINGS_FORMAT, "identity": fresh_identity, "groups": []}
    doc = read_json(path, "timings journal")
    if not isinstance(doc, dict) or doc.get("format") != TIMINGS_FORMAT:
        raise LUTError(f"{path} is not a timings journal; move it away (it is never overwritten)")
    check_same_settings(doc["identity"], fresh_identity, where=path, error=LUTError,
                        hint="use another --lut-out or the same settings")
    return doc


def _complete(group: dict) -> bool:
    return all(len(t) == group["runs"] for t in group["times_ms"].values())


def anchored_stats(journal: dict) -> dict[int, dict[str, dict]]:
    """Statistics of every complete rotation: group index -> key -> summary.

    A re-timing rotation (one with `anchors` and `scaled_to`) is put on the scale of the rotation
    it re-times: each statistic of its non-anchor models is multiplied by the median over its
    anchors of that statistic there over the same statistic here.
    """
    out: dict[int, dict[str, dict]] = {}
    for g, group in enumerate(journal["groups"]):
        if not _complete(group):
            continue
        stats = {k: timing.summarize(t) for k, t in group["times_ms"].items()}
        if group.get("anchors"):
            ref = out[group["scaled_to"]]
            anchors = [a for a in group["anchors"] if a in ref]
            for name in DIFFERENCED:
                scale = float(np.median([ref[a][name] / stats[a][name] for a in anchors]))
                for k in stats:
                    if k not in group["anchors"]:
                        stats[k][name] *= scale
            stats = {k: s for k, s in stats.items() if k not in group["anchors"]}
        out[g] = stats
    return out


def latest_stats(journal: dict) -> dict[str, tuple[int, dict]]:
    """key -> (index of the latest complete rotation that timed it, its statistics there, anchored)."""
    return {key: (g, s) for g, stats in sorted(anchored_stats(journal).items()) for key, s in stats.items()}


def retimed_keys(journal: dict) -> set[str]:
    """Models a re-timing rotation of the journal timed (its anchors excluded)."""
    return {k for group in journal["groups"] if group.get("anchors")
            for k in group["times_ms"] if k not in group["anchors"]}


def context_entry(with_ctx: dict, ctx: dict) -> tuple[dict, bool]:
    """(the in-context statistics: `with_ctx` - `ctx` per DIFFERENCED statistic, whether any was floored)."""
    out, floored = {}, False
    for name in DIFFERENCED:
        value = with_ctx[name] - ctx[name]
        floored |= name == "median_ms" and value <= FLOOR_MS
        out[name] = max(value, FLOOR_MS)
    out["runs"] = min(with_ctx["runs"], ctx["runs"])
    return out, floored


def entries_from_journal(manifest_entries: Sequence[dict], journal: dict, method: str) -> dict[str, dict]:
    """LUT entries (key -> entry) of every unit the journal has timed, by `method`.

    In context, a unit's entry differences its ".ctx" model and its context unit as timed in
    the latest group that timed both.
    """
    groups = anchored_stats(journal)
    latest = {k: stats for g in sorted(groups) for k, stats in groups[g].items()}
    out = {}
    for e in manifest_entries:
        if e["kind"] in ("model", "context"):
            continue
        if e["key"] in latest and (method != CONTEXT_METHOD or e["kind"] in ("stem", "v2_stem")):
            out[e["key"]] = make_entry(e["kind"], e["unit"], latest[e["key"]])
    if method == CONTEXT_METHOD:
        for e in manifest_entries:
            if e["kind"] != "context":
                continue
            ctx = e["unit"]["context"]
            both = [g for g, stats in sorted(groups.items()) if e["key"] in stats and ctx in stats]
            if not both:
                continue
            stats, floored = context_entry(groups[both[-1]][e["key"]], groups[both[-1]][ctx])
            entry = make_entry(e["unit"]["kind"], e["unit"]["fields"], stats)
            entry["context"] = ctx
            if floored:
                entry["note"] = f"free within noise in context (difference <= {FLOOR_MS} ms), stored as {FLOOR_MS} ms"
            out[e["key"][:-len(".ctx")]] = entry
    return out


# ----------------------------------------------------------------------------- monotone rows
def rows(entries: dict[str, dict]) -> list[list[str]]:
    """Every row of the LUT: keys of one unit kind at one resolution (and hyper-parameters), by width.

    Single-width kinds give one row per line; downsamplings give one row per Cin (along Cout)
    and one per Cout (along Cin).
    """
    from android_ios_bench.predictor import GRID_KINDS, LINE_KINDS

    lines: dict[tuple, list[tuple[int, str]]] = {}
    for key, e in entries.items():
        kind = e["kind"]
        if kind in GRID_KINDS:
            lines.setdefault((kind, e["res"], "cin", e["cin"]), []).append((e["cout"], key))
            lines.setdefault((kind, e["res"], "cout", e["cout"]), []).append((e["cin"], key))
        elif kind in LINE_KINDS:
            width, hyper = LINE_KINDS[kind]
            lines.setdefault((kind, e["res"]) + tuple(e[h] for h in hyper), []).append((e[width], key))
    return [[k for _, k in sorted(v)] for v in lines.values() if len(v) > 1]


def non_monotone(entries: dict[str, dict], statistic: str = CORRECTION_STATISTIC) -> list[tuple[str, str]]:
    """(narrower, wider) neighbours of a row where the wider unit is cheaper beyond the tolerance."""
    flagged = []
    for row in rows(entries):
        for a, b in zip(row, row[1:]):
            lo, hi = entries[a][statistic], entries[b][statistic]
            if hi < lo * (1 - MONOTONE_TOLERANCE) - MONOTONE_FLOOR_MS:
                flagged.append((a, b))
    return flagged


def retime_rotation(flagged: Sequence[tuple[str, str]], entries: dict[str, dict], method: str,
                    padding: Sequence[str], seed: int = 0) -> tuple[list[str], list[str]]:
    """(models, anchors) of the rotation re-timing every flagged pair of neighbours (in context each with its
    context unit), padded with anchors drawn from `padding` to RETIME_ROTATION models."""
    keys: list[str] = []
    for a, b in flagged:
        for key in (a, b):
            ctx = entries[key].get("context")
            keys += [ctx, f"{key}.ctx"] if method == CONTEXT_METHOD and ctx else [key]
    keys = list(dict.fromkeys(keys))
    others = [k for k in padding if k not in set(keys)]
    fill = np.random.default_rng(seed).permutation(len(others))[:max(1, RETIME_ROTATION - len(keys))]
    anchors = [others[i] for i in sorted(fill)]
    return keys + anchors, anchors


# ----------------------------------------------------------------------------- measure
def measure_manifest(manifest_path: str, lut_out: str, *, threads: int = 2, precision: str | None = None,
                     method: str = ROTATION_METHOD, warmup: int = 5, runs: int = 50,
                     group_size: int = DEFAULT_GROUP_SIZE, seed: int = 0, device: dict | None = None,
                     command: str | None = None, keys: Sequence[str] | None = None,
                     retime_passes: int = RETIME_PASSES,
                     progress: Callable[[int, int, str, dict], None] | None = None,
                     log: Callable[[str], None] | None = None) -> dict:
    """Measures every manifest model missing from the journal / `lut_out` and writes the complete LUT.

    Args:
        manifest_path: manifest.json written by android_ios_bench.export (tflite files required).
        lut_out: LUT to create or resume; its timings journal is `timings_path(lut_out)`.
        threads: LiteRT CPU threads. precision: must match the manifest's (default: the manifest's).
        method: "in_rotation" (one rotation), "in_context" (needs the manifest's ".ctx" models) or
            "isolated" (rotations of `group_size` models).
        warmup, runs: untimed and timed invocations per model (rounds of the rotation).
        group_size: models per rotation (0: every model in one rotation, all loaded at once).
        keys: measure only these manifest keys (and, in context, what they need) (default all).
        retime_passes: how often non-monotone rows are re-timed (0: never).
        progress: called as progress(done, total, key, stats) after each measured model.
        log: called with one line per re-timing pass.
    """
    for name, value, low in (("runs", runs, 1), ("warmup", warmup, 0), ("threads", threads, 1),
                             ("group_size", group_size, 0), ("retime_passes", retime_passes, 0)):
        check_int(name, value, low=low, error=LUTError)
    if method not in METHODS:
        raise LUTError(f"method must be one of {METHODS}, got {method!r}")
    if method == ROTATION_METHOD and group_size:
        raise LUTError("method in_rotation times every model in one rotation: leave --group-size at 0, or use "
                       "--method isolated for rotations of that many models")
    if method == ISOLATED_METHOD and not group_size:
        raise LUTError("method isolated times units in small rotations: give --group-size N (16 as host LUTs "
                       "before 2026-12-06), or use --method in_rotation for one rotation")
    lut_out = check_output(lut_out, overwrite=True, suffix=".json", flag="--lut-out", error=LUTError)  # resumable
    manifest = load_manifest(manifest_path, require_files="tflite")
    precision = precision or manifest["precision"]
    if precision != manifest["precision"]:
        raise LUTError(f"{manifest_path} holds {manifest['precision']} models but --precision is {precision}; "
                       "export a manifest at that precision")
    entries = _select(manifest["entries"], keys, method, manifest_path)
    fresh = new_lut(
        device=device or host_device(),
        runtime={"name": RUNTIME_NAME, "version": _litert_version(), "delegate": DELEGATE, "compute_units": None,
                 "threads": threads, "precision": precision},
        measurement={"tool": "android_ios_bench.host", "tool_version": __version__, "date": now_iso(),
                     "method": method, "statistic": CORRECTION_STATISTIC, "warmup": warmup, "runs": runs,
                     "order": "one rotation of every model, shuffled per round" if not group_size else
                              f"rotations of up to {group_size} models, shuffled per round"
                              + (" (a context unit with the units timed after it)" if method == CONTEXT_METHOD
                                 else ""),
                     "command": command or "android_ios_bench.host.measure_manifest"},
        search_space=manifest["search_space"])
    doc = fresh
    if os.path.exists(lut_out):
        doc = load_lut(lut_out)
        check_same_settings(identity(doc), identity(fresh), where=lut_out, error=LUTError,
                            hint="use another --lut-out or the same settings")
    journal_path = timings_path(lut_out)
    journal = _open_journal(journal_path, identity(fresh))
    by_key = {e["key"]: e for e in entries}
    start, load_before = time.time(), _load()
    log = log or (lambda msg: None)
    timed_any = False

    def time_rotation(keys: Sequence[str], rounds: int, seed_base: int, anchors: Sequence[str] = ()):
        """Times `keys` in one rotation for `rounds` rounds, saving the journal every ROUNDS_PER_SAVE rounds;
        finishes the journal's last rotation when it holds exactly these keys unfinished. With `anchors`,
        the rotation re-times the others on the scale of the latest main rotation (`anchored_stats`)."""
        nonlocal timed_any
        last = journal["groups"][-1] if journal["groups"] else None
        if last is not None and not _complete(last) and list(last["times_ms"]) == list(keys):
            record = last
        else:
            record = {"runs": rounds, "times_ms": {k: [] for k in keys}}
            if anchors:
                mains = [g for g, group in enumerate(journal["groups"]) if _complete(group) and not group.get("anchors")]
                record.update(anchors=list(anchors), scaled_to=mains[-1])
            journal["groups"].append(record)
        paths = [os.path.join(manifest["_dir"], by_key[k]["tflite"]) for k in keys]
        interpreters = [load_interpreter(p, threads, seed_base) for p in paths]
        runners = {k: it.invoke for k, it in zip(keys, interpreters)}
        done, warm = len(record["times_ms"][keys[0]]), warmup
        while done < record["runs"]:
            n = min(ROUNDS_PER_SAVE, record["runs"] - done)
            times = timing.time_interleaved(runners, n, warm, seed=seed_base + done)
            for k in keys:
                record["times_ms"][k] += [round(float(t), 6) for t in times[k]]  # ns resolution
            write_json(journal_path, journal)
            done, warm, timed_any = done + n, 0, True
            log(f"[rotation {len(journal['groups'])}: {len(keys)} models] round {done}/{record['runs']} "
                f"{time.time() - start:.0f}s")
        del runners, interpreters
        if progress:
            summary = {k: timing.summarize(record["times_ms"][k]) for k in keys}
            for i, k in enumerate(keys, start=1):
                progress(i, len(keys), k, summary[k])

    last = journal["groups"][-1] if journal["groups"] else None
    if last is not None and not _complete(last) and all(k in by_key for k in last["times_ms"]):
        time_rotation(list(last["times_ms"]), last["runs"], seed, last.get("anchors", ()))  # interrupted: finish it
    have = set(latest_stats(journal)) | _measured_in_lut(doc, entries)
    todo = [e for e in entries if e["key"] not in have]
    groups = plan_groups(todo, method, group_size, seed) if method != CONTEXT_METHOD else \
        _complete_groups(plan_groups(entries, method, group_size, seed), have, entries)
    if not groups and not timed_any and os.path.exists(lut_out):
        return doc  # complete: written (rows checked, correction fitted) when its last model was timed
    for g, keys in enumerate(groups):
        time_rotation(keys, runs, seed + 1000 * (g + 1))
    unit_entries = {**{k: v for k, v in doc["entries"].items()}, **entries_from_journal(entries, journal, method)}
    padding = [e["key"] for e in entries if e["kind"] not in ("model",)]
    for p in range(retime_passes):
        flagged = [f for f in non_monotone(unit_entries) if all(k in by_key or f"{k}.ctx" in by_key for k in f)]
        if not flagged:
            break
        log(f"re-timing pass {p + 1}: {len(flagged)} non-monotone neighbour pairs in "
            f"{len({k for f in flagged for k in f})} units")
        keys, anchors = retime_rotation(flagged, unit_entries, method, padding, seed + p)
        time_rotation(keys, 2 * runs, seed + 10_000 * (p + 1), anchors)
        unit_entries.update(entries_from_journal(entries, journal, method))
    retimed = {k[:-len(".ctx")] if k.endswith(".ctx") else k for k in retimed_keys(journal)} & set(unit_entries)
    still = non_monotone(unit_entries)
    for a, b in still:
        for key in (a, b):
            note = f"not monotone in width after {retime_passes} re-timing(s) ({a} vs {b}); kept as measured"
            unit_entries[key]["note"] = "; ".join(filter(None, (unit_entries[key].get("note"), note)))
    doc["entries"] = unit_entries
    latest = latest_stats(journal)
    for e in entries:
        if e["kind"] == "model" and e["key"] in latest:
            store_reference(doc, e["unit"], latest[e["key"]][1])
    doc["measurement"].update(date=now_iso() if timed_any else doc["measurement"]["date"],
                              retimed=sorted(retimed), non_monotone=[list(f) for f in still])
    if timed_any:
        doc["measurement"]["notes"] = (f"{len(journal['groups'])} rotation(s) in the timings journal; the run that "
                                       f"completed it timed for {time.time() - start:.0f}s, 1-min load average "
                                       f"{load_before:.2f} at its start, {_load():.2f} at its end")
    if doc.get("reference_models"):
        refit_correction(doc)
    save_lut(doc, lut_out)
    return doc


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _select(entries: Sequence[dict], keys, method: str, manifest_path: str) -> list[dict]:
    """The manifest entries to measure: all, or `keys` plus (in context) their ".ctx" models and contexts."""
    by_key = {e["key"]: e for e in entries}
    if method == CONTEXT_METHOD and not any(e["kind"] == "context" for e in entries) and any(
            e["kind"] not in ("model", "stem", "v2_stem") for e in entries):
        raise LUTError(f"{manifest_path} has no in-context micro-models; re-export it with "
                       "`python -m android_ios_bench.export --method in_context` or measure --method isolated")
    if keys is None:
        return list(entries)
    wanted = set(keys)
    if method == CONTEXT_METHOD:
        for k in list(wanted):
            if f"{k}.ctx" in by_key:
                wanted |= {f"{k}.ctx", by_key[f"{k}.ctx"]["unit"]["context"]}
    return [e for e in entries if e["key"] in wanted]


def _measured_in_lut(doc: dict, entries: Sequence[dict]) -> set[str]:
    """Manifest keys an existing LUT already covers (its entries and reference models are kept)."""
    have = {f"model_{r['name']}" for r in doc.get("reference_models", [])}
    for e in entries:
        if e["kind"] == "context" and e["key"][:-len(".ctx")] in doc["entries"]:
            have |= {e["key"], e["unit"]["context"]}
        elif e["key"] in doc["entries"]:
            have.add(e["key"])
    return have


def _complete_groups(groups: list[list[str]], have: set[str], entries: Sequence[dict]) -> list[list[str]]:
    """In context: what the planned rotations still miss, with the partner of every missing difference
    (a ".ctx" model's context unit, a context unit's ".ctx" models), so each difference is taken
    within one rotation."""
    partners: dict[str, set[str]] = {}
    for e in entries:
        if e["kind"] == "context":
            partners.setdefault(e["key"], set()).add(e["unit"]["context"])
            partners.setdefault(e["unit"]["context"], set()).add(e["key"])
    out = []
    for group in groups:
        missing = {k for k in group if k not in have}
        missing |= {p for k in missing for p in partners.get(k, ())}
        if missing:
            out.append([k for k in group if k in missing] + sorted(missing - set(group)))
    return out


def store_reference(doc: dict, unit: dict, stats: dict) -> None:
    """Records a whole reference model's timing in the LUT (replacing an older record of that name)."""
    refs = [r for r in doc.setdefault("reference_models", []) if r["name"] != unit["name"]]
    refs.append({"name": unit["name"], "config": unit["config"],
                 **{k: stats[k] for k in ("median_ms", "p10_ms", "min_ms", "mean_ms", "runs") if k in stats}})
    doc["reference_models"] = sorted(refs, key=lambda r: r["name"])
