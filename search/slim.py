"""Latency-driven slimming of a trained supernet (paper §3.3, step 3).

    python -m search.slim --target 12                        # embedded host LUT, trains a supernet first
    python -m search.slim --target-like l1 --supernet runs/supernet --out runs/slim
    python -m search.slim --target 1.6 --lut iphone12_coreml.json --supernet DIR   # the paper's setting

Start: the whole supernet as a sub-network, stages 1-3 in 4D blocks and every stage-4
MetaPath in its 3D block. Starting from the attention α prefers (`scoring.initial_num_vit`)
would let α decide alone; after a few-minute proxy run its stage-4 probabilities are within
a few points of uniform (0.31-0.37 measured), so the start does not depend on them: the MB3D
action turns attention into 4D blocks only when the held-out accuracy per ms says so, and
the trajectory shows each such step. Each step applies every applicable
action (`actions.py`: depth, first-MB3D, width), predicts each result's latency with the LUT
(`android_ios_bench.predictor`, deployment resolution) and measures, image by image, its
top-1 and cross-entropy on the held-out split with weights inherited from the supernet
(`supernet.child_model`: identity = block dropped, width = leading channels sliced;
BatchNorm statistics re-estimated on 256 training images, as Once-for-All does, since both
change what every later BatchNorm sees). The action with the smallest accuracy drop per ms
saved wins when no other candidate is better by more than 1.96 paired standard errors and
it beats every other by that margin; candidates within noise of each other are separated by
the loss increase per ms (same rule), then by the paper's importance score of what the
action removes (`choose`). Every candidate's accuracy
± SE, drop per ms ± paired SE and the rule that decided are in the trajectory, with the
count of steps decided within noise. Repeat until the predicted latency is <= the target.
By default every stage keeps at least one block (`--allow-empty-stages` lifts that).

State: `<out>/trajectory.json` is rewritten atomically after every step; a re-run with the
same inputs resumes after the last finished step. The inputs (target, LUT and supernet
contents, data, seed and the scoring settings) are recorded in `<out>/run.json`
(`ef_keras.runs`): a re-run with other inputs is refused, naming what differs. Outputs in
`<out>`: `architecture.json` (EfficientFormerConfig), `trajectory.json` + `trajectory.png`,
`slimmed.keras` (inherited weights, at the supernet's proxy input size) and a printed
summary table.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import numpy as np

from search.arch import Arch, full_arch, smallest_arch
from search import actions as actions_lib
from search.scoring import path_scores
from search.supernet import (SUPERNET_JSON, WEIGHTS_FILE, SupernetError, child_model, load_supernet)
from ef_keras.errors import EfKerasError, require
from ef_keras.output import check_run_directory, write_json, writing
from ef_keras.runs import files_sha256, record_settings, resume_settings

TRAJECTORY = "trajectory.json"
ARCH_JSON = "architecture.json"
MODEL_FILE = "slimmed.keras"
PLOT_FILE = "trajectory.png"
#: Held-out images that score every candidate (the embedded set has 5,000). With 1,000, every
#: step of the quick job was a tie within noise (paired SE ~1 %/ms); 2,500 divide the SE by 1.6
#: and keep slimming near 2 minutes on 2 cores at 96 px; --eval-images 5000 buys more signal
#: at twice the time.
DEFAULT_EVAL_IMAGES = 2500
#: Training images used to re-estimate BatchNorm statistics of every candidate (0: keep the supernet's).
DEFAULT_CALIBRATION_IMAGES = 256


class SlimError(EfKerasError):
    """Bad slimming input (target, LUT, supernet): one line saying what to do."""


# --------------------------------------------------------------------------- latency
def load_lut(path=None) -> dict:
    """The LUT document at `path`, or the embedded host LUT; SlimError when missing or invalid."""
    from android_ios_bench import lut as L

    try:
        return L.load_default_lut() if path is None else L.load_lut(path)
    except L.LUTError as e:
        raise SlimError(str(e)) from e
    except OSError as e:
        raise SlimError(f"cannot read LUT {path}: {e.strerror or e}") from e


def predict_ms(config, lut: dict) -> float:
    """Predicted deployment latency (ms) of an EfficientFormerConfig from the LUT."""
    from android_ios_bench.lut import LUTError
    from android_ios_bench.predictor import predict

    try:
        return float(predict(config, lut).ms)
    except LUTError as e:
        raise SlimError(f"the LUT does not cover architecture {config.widths}/{config.depths}: {e}") from e


def check_lut_covers(lut: dict, supernet_config) -> None:
    """SlimError unless the LUT's search space covers every width/resolution of the supernet."""
    from android_ios_bench.lut import LUTError, check_search_space

    try:
        check_search_space(lut, input_size=224, max_widths=tuple(supernet_config.widths))
    except LUTError as e:
        raise SlimError(f"the LUT does not cover the supernet (widths {list(supernet_config.widths)} at 224): "
                        f"{e}") from e


# --------------------------------------------------------------------------- accuracy
def load_eval_split(data: str, image_size: int, data_dir=None, max_images=DEFAULT_EVAL_IMAGES, seed: int = 0,
                    split: str | None = None):
    """A split as arrays (x float32 NHWC, y int), eval preprocessing.

    Default: the held-out split, never used to train supernet weights. `split="train"` gives
    the BatchNorm calibration images.
    """
    from ef_keras.data import make_dataset

    ds = make_dataset(data, split, data_dir=data_dir, image_size=image_size, batch_size=100, training=False,
                      seed=seed)
    xs, ys, n = [], [], 0
    for images, labels in ds:
        xs.append(images.numpy())
        ys.append(np.argmax(labels.numpy(), axis=-1))
        n += len(ys[-1])
        if n >= max_images:
            break
    return np.concatenate(xs)[:max_images], np.concatenate(ys)[:max_images]


def per_image(model, x: np.ndarray, y: np.ndarray, batch_size: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """(correct: bool (N,), cross-entropy: float64 (N,)) of `model` on (x, y), inference mode.

    Per-image results let slimming compare candidates *paired* (on the same images), whose
    standard error is far smaller than that of two independent accuracies.
    """
    import keras

    correct, losses = [], []
    for i in range(0, len(x), batch_size):
        logits = np.asarray(keras.ops.convert_to_numpy(model(x[i:i + batch_size], training=False)), "float64")
        t = y[i:i + batch_size]
        z = logits - logits.max(-1, keepdims=True)
        correct.append(np.argmax(logits, -1) == t)
        losses.append(np.log(np.exp(z).sum(-1)) - z[np.arange(len(t)), t])
    return np.concatenate(correct), np.concatenate(losses)


def evaluate(model, x: np.ndarray, y: np.ndarray, batch_size: int = 250) -> tuple[float, float]:
    """(top-1 %, mean cross-entropy) of `model` on (x, y), inference mode."""
    correct, losses = per_image(model, x, y, batch_size)
    return 100.0 * float(correct.mean()), float(losses.mean())


def standard_error(values: np.ndarray) -> float:
    """Standard error of the mean of per-image values (0 for fewer than 2)."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


# --------------------------------------------------------------------------- decisions
#: A difference is signal when it exceeds NOISE_Z paired standard errors (two-sided 95 %).
NOISE_Z = 1.96


def _better(a: np.ndarray, b: np.ndarray, z: float = NOISE_Z) -> bool:
    """Whether per-image values a are lower than b (same images) by more than z paired standard errors."""
    d = a - b
    return float(d.mean()) < -z * standard_error(d)


def _plausible_best(candidates: list[dict], indices: list[int], key: str, z: float) -> list[int]:
    """The candidates no other one beats by more than z paired SEs on per-image `key` (lower is better)."""
    return [i for i in indices
            if not any(j != i and _better(candidates[j][key], candidates[i][key], z) for j in indices)]


def choose(candidates: list[dict], z: float = NOISE_Z) -> tuple[int, list[int], str]:
    """The action slimming takes: (index of the winner, indices tied with it, the rule that decided).

    Each candidate holds per-image arrays `drop` (top-1 points lost per ms saved, i.e.
    100 * (correct_now - correct_cand) / saved_ms) and `dloss` (cross-entropy increase per
    ms saved), and its `importance` (the paper's score of what it removes). The rule:

    1. keep the candidates that no other candidate beats on accuracy drop per ms by more than
       z paired standard errors; if one is left, it wins ("accuracy");
    2. among those, keep the ones no other beats on loss increase per ms by more than z paired
       SEs; if one is left, it wins ("loss");
    3. otherwise the least important removal (the paper's score) among them wins
       ("importance"), then the smaller mean loss increase; the order of the actions never decides.
    """
    if not candidates:
        raise ValueError("no candidates to choose from")
    tied = _plausible_best(candidates, list(range(len(candidates))), "drop", z)
    if len(tied) == 1:
        return tied[0], tied, "accuracy"
    close = _plausible_best(candidates, tied, "dloss", z)
    if len(close) == 1:
        return close[0], tied, "loss"
    return min(close, key=lambda i: (candidates[i]["importance"], float(candidates[i]["dloss"].mean()))), tied, \
        "importance"


# --------------------------------------------------------------------------- the search
def _settings(supernet_dir: str, lut: dict, target_ms: float, data: str, seed: int, eval_images: int,
              calibration_images: int, min_depth: int) -> dict:
    """Everything that decides the search's result: the resume key of `ef_keras.runs`."""
    return {"supernet_sha256": files_sha256(*(os.path.join(supernet_dir, n) for n in (SUPERNET_JSON, WEIGHTS_FILE))),
            "lut_sha256": hashlib.sha256(json.dumps(lut, sort_keys=True).encode()).hexdigest(),
            "target_ms": target_ms, "data": data, "seed": seed, "eval_images": eval_images,
            "calibration_images": calibration_images, "min_depth": min_depth, "noise_z": NOISE_Z}


def reachable_range(supernet_config, lut: dict, min_depth: int = 1) -> tuple[float, float, Arch]:
    """(smallest reachable latency, the supernet's own latency, the starting Arch) of a supernet config."""
    start = full_arch(supernet_config, supernet_config.depths[3])
    lo = predict_ms(smallest_arch(supernet_config, min_depth).to_config(supernet_config), lut)
    hi = predict_ms(start.to_config(supernet_config), lut)
    return lo, hi, start


#: The paper's iPhone 12 CoreML latencies (ms), which users often type as a --target.
PAPER_IPHONE_MS = {"l1": 1.6, "l3": 3.0, "l7": 7.0}


def _is_iphone(lut: dict) -> bool:
    device = " ".join(str(v) for v in lut.get("device", {}).values()).lower()
    return any(word in device for word in ("iphone", "ios"))


def check_target_reachable(target_ms: float, lo: float, hi: float, lut: dict) -> None:
    """SlimError saying what to do when `target_ms` is outside the reachable range [lo, hi], or is
    one of the paper's iPhone figures asked of a LUT of another device (a unit mix-up, not a target)."""
    paper_figure = not _is_iphone(lut) and any(abs(target_ms - v) < 1e-9 for v in PAPER_IPHONE_MS.values())
    if lo <= target_ms <= hi and not paper_figure:
        return
    device = lut.get("device", {}).get("name", "this device")
    where = f"{lo:.3f} ms (smallest architecture) to {hi:.3f} ms (the supernet itself)"
    if target_ms > hi:
        raise SlimError(f"target {target_ms:.3f} ms is above what this supernet reaches on the LUT of {device}: "
                        f"{where}; the supernet already meets it, or pass a larger supernet")
    paper = ", ".join(f"{k.upper()} {v} ms" for k, v in PAPER_IPHONE_MS.items())
    what = ("is below what this supernet reaches on" if target_ms < lo
            else "is the paper's iPhone figure, but this is the LUT of")
    raise SlimError(f"target {target_ms:.3f} ms {what} {device} (reachable: {where}). "
                    f"The paper's figures ({paper}) are iPhone 12 CoreML latencies, not this device's: measure an "
                    "iPhone LUT with the iOS harness (android_ios_bench/ios) and pass --lut IPHONE_LUT, or use "
                    "--target-like l1 for L1's latency on this LUT")


def resolve_target(target, target_like, lut: dict) -> float:
    """The target in ms: --target, or the LUT latency of a named model (--target-like)."""
    if (target is None) == (target_like is None):
        raise SlimError("give exactly one of --target MS or --target-like l1|l3|l7")
    if target_like is not None:
        from ef_keras.models.efficientformer.config import VARIANTS

        if target_like.lower() not in VARIANTS:
            raise SlimError(f"--target-like must be one of {sorted(VARIANTS)}, got {target_like!r}")
        return predict_ms(VARIANTS[target_like.lower()], lut)
    try:
        target = float(target)
    except (TypeError, ValueError) as e:
        raise SlimError(f"--target must be a number of milliseconds, got {target!r}") from e
    if not np.isfinite(target) or target <= 0:
        raise SlimError(f"--target must be a positive number of milliseconds, got {target}")
    return target


class _Scorer:
    """Builds a candidate's sub-network (inherited weights, BatchNorm re-estimated) and scores it per image."""

    def __init__(self, supernet, x, y, calibration):
        self.supernet, self.x, self.y, self.calibration = supernet, x, y, calibration

    def __call__(self, arch: Arch) -> tuple[np.ndarray, np.ndarray]:
        import keras

        model = child_model(self.supernet, arch, calibration=self.calibration)
        result = per_image(model, self.x, self.y)
        del model
        keras.backend.clear_session(free_memory=False)
        return result


def slim(supernet_dir: str, out_dir: str, *, target=None, target_like=None, lut=None, data="embedded",
         data_dir=None, seed: int = 0, eval_images: int = DEFAULT_EVAL_IMAGES,
         calibration_images: int = DEFAULT_CALIBRATION_IMAGES, allow_empty_stages: bool = False,
         log=print) -> dict:
    """Runs (or resumes) the slimming search; returns the final trajectory record.

    Args:
        supernet_dir: a directory written by `search.train_supernet`.
        out_dir: where the outputs and the resumable state go.
        target / target_like: the latency target in ms on the LUT's device, or a variant name
            whose LUT latency is the target.
        lut: a LUT path or document (None: the embedded host LUT).
        data, data_dir: the dataset whose held-out split scores candidates (same as training).
        seed: recorded, and keys the state (the search itself has no randomness).
        eval_images: cap on held-out images used per candidate.
        calibration_images: training images on which every candidate's BatchNorm statistics
            are re-estimated before it is scored (and the final model's); 0 disables.
        allow_empty_stages: let the depth action remove the last block of a stage (default
            False: every stage keeps at least one MetaBlock, as every EfficientFormer does).
    """
    import keras

    out_dir = check_run_directory(out_dir)
    keras.utils.set_random_seed(seed)
    lut_doc = lut if isinstance(lut, dict) else load_lut(lut)
    target_ms = resolve_target(target, target_like, lut_doc)
    try:
        supernet, _ = load_supernet(supernet_dir)
    except SupernetError as e:
        raise SlimError(str(e)) from e
    _check_finite_supernet(supernet, supernet_dir)
    check_lut_covers(lut_doc, supernet.config)
    min_depth = 0 if allow_empty_stages else 1
    lo, hi, start = reachable_range(supernet.config, lut_doc, min_depth)
    check_target_reachable(target_ms, lo, hi, lut_doc)
    settings = _settings(supernet_dir, lut_doc, target_ms, data, seed, eval_images, calibration_images, min_depth)
    recorded = resume_settings(out_dir, settings, error=SlimError)

    os.makedirs(out_dir, exist_ok=True)
    if not recorded:
        record_settings(out_dir, settings)
    x, y = load_eval_split(data, supernet.image_size, data_dir, eval_images, seed)
    calib = (load_eval_split(data, supernet.image_size, data_dir, calibration_images, seed, split="train")[0]
             if calibration_images else None)
    scorer = _Scorer(supernet, x, y, calib)
    scores = path_scores(supernet.probabilities(), supernet.path_stage)
    state_path = os.path.join(out_dir, TRAJECTORY)
    state = _load_state(state_path)
    if state is None:
        now = scorer(start)
        state = {"target_ms": target_ms, "target_like": target_like, "seed": seed,
                 "supernet": os.path.abspath(supernet_dir), "lut_device": lut_doc.get("device", {}).get("name"),
                 "reachable_ms": [lo, hi], "eval_images": int(len(y)), "path_scores": scores.tolist(),
                 "min_depth": min_depth, "noise_z": NOISE_Z, "done": False,
                 "steps": [_record(0, "start", "whole supernet", start, hi, now, None, "", [])]}
        write_json(state_path, state)
    else:
        log(f"resuming {state_path} after step {state['steps'][-1]['step']}")
        now = scorer(Arch.from_dict(state["steps"][-1]["arch"]))
    cur = state["steps"][-1]
    arch = Arch.from_dict(cur["arch"])
    log(f"slimming to {target_ms:.3f} ms (reachable {lo:.3f}-{hi:.3f} ms) on {len(y)} held-out images")
    while cur["latency_ms"] > target_ms:
        t0 = time.time()
        evaluated = _evaluate_actions(arch, now, cur["latency_ms"], supernet, scorer, scores, lut_doc, min_depth)
        if not evaluated:
            raise SlimError(f"no action lowers the latency below {cur['latency_ms']:.3f} ms; "
                            f"target {target_ms:.3f} ms not reachable" +
                            ("" if allow_empty_stages else " while every stage keeps a block (--allow-empty-stages)"))
        won, tied, rule = choose(evaluated)
        best = evaluated[won]
        arch, now = best["arch"], best["per_image"]
        cur = _record(cur["step"] + 1, best["action"], best["desc"], arch, best["latency_ms"], now,
                      _candidate_summary(best), rule, [_candidate_summary(c, i in tied) for i, c in enumerate(evaluated)])
        state["steps"].append(cur)
        state["steps_decided_within_noise"] = sum(st["decided_by"] not in ("", "accuracy") for st in state["steps"])
        write_json(state_path, state)
        log(f"step {cur['step']:3d}  {best['action']:5s}  {arch.describe():40s}  {cur['latency_ms']:8.3f} ms  "
            f"top-1 {cur['acc']:6.2f} ± {cur['acc_se']:.2f} %  by {rule:10s} ({time.time() - t0:.1f} s)  {best['desc']}")

    final = _finish(supernet, arch, state, out_dir, target_ms, calib)
    state["done"] = True
    write_json(state_path, state)
    return final


def _evaluate_actions(arch: Arch, now, latency_ms: float, supernet, scorer, scores, lut: dict,
                      min_depth: int) -> list[dict]:
    """Every applicable action that lowers the predicted latency, scored image by image against `now`.

    Each record holds the candidate, its latency and the ms it saves, its per-image
    (correct, loss), the accuracy drop and loss increase per ms saved (per image, for the
    paired standard errors of `choose`) and the paper's importance of what it removes.
    """
    evaluated = []
    for name, cand, desc in actions_lib.candidates(arch, scores, supernet.path_stage, min_depth):
        lat = predict_ms(cand.to_config(supernet.config), lut)
        saved = latency_ms - lat
        if saved <= 0:
            continue
        correct, losses = scorer(cand)
        evaluated.append({"action": name, "desc": desc, "arch": cand, "latency_ms": lat, "saved_ms": saved,
                          "per_image": (correct, losses),
                          "drop": 100.0 * (now[0].astype("float64") - correct) / saved,
                          "dloss": (losses - now[1]) / saved,
                          "importance": actions_lib.importance(name, arch, cand, scores, supernet.path_stage)})
    return evaluated


def _check_finite_supernet(supernet, directory: str) -> None:
    """SlimError when the supernet's weights or α hold NaN/Inf (a diverged training run)."""
    for v in supernet.weights:
        if not np.all(np.isfinite(_value(v))):
            raise SlimError(f"supernet {directory} has non-finite values in {v.path}: its training diverged; "
                            "retrain it with a lower --lr")


def _value(variable) -> np.ndarray:
    """A Keras variable's value as a NumPy array."""
    import keras

    return np.asarray(keras.ops.convert_to_numpy(variable))


def _candidate_summary(c: dict, tied: bool | None = None) -> dict:
    """The JSON record of one evaluated action: latency, accuracy ± SE, drop and loss per ms ± paired SE."""
    correct, losses = c["per_image"]
    out = {"action": c["action"], "desc": c["desc"], "latency_ms": c["latency_ms"], "saved_ms": c["saved_ms"],
           "acc": 100.0 * float(correct.mean()), "acc_se": 100.0 * standard_error(correct.astype("float64")),
           "loss": float(losses.mean()), "drop_per_ms": float(c["drop"].mean()),
           "drop_per_ms_se": standard_error(c["drop"]), "loss_per_ms": float(c["dloss"].mean()),
           "loss_per_ms_se": standard_error(c["dloss"]), "importance": c["importance"]}
    if tied is not None:
        out["tied_with_winner"] = tied
    return out


def _record(step, action, desc, arch, latency, per_image_result, chosen, decided_by, candidates):
    correct, losses = per_image_result
    rec = {"step": step, "action": action, "desc": desc, "arch": arch.to_dict(), "latency_ms": latency,
           "acc": 100.0 * float(correct.mean()), "acc_se": 100.0 * standard_error(correct.astype("float64")),
           "loss": float(losses.mean()), "decided_by": decided_by, "candidates": candidates}
    for key in ("drop_per_ms", "drop_per_ms_se", "loss_per_ms", "loss_per_ms_se"):
        rec[key] = None if chosen is None else chosen[key]
    return rec


def _load_state(path: str):
    """The trajectory of an unfinished or finished run (its settings are checked by `resume_settings`), or None."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None  # unreadable state: start over (it is rewritten atomically, so this is rare)
    return state if state.get("steps") else None


def _finish(supernet, arch: Arch, state: dict, out_dir: str, target_ms: float, calibration) -> dict:
    """Writes architecture JSON, the inherited-weights model and the plot; returns a summary dict."""
    name = f"slim_{target_ms:.3g}ms".replace(".", "p")
    config = arch.to_config(supernet.config, name=name)
    config.save(os.path.join(out_dir, ARCH_JSON))
    model = child_model(supernet, arch, name=name, calibration=calibration)
    with writing(os.path.join(out_dir, MODEL_FILE)) as tmp:
        model.save(tmp)
    plot_trajectory(state, os.path.join(out_dir, PLOT_FILE))
    last = state["steps"][-1]
    return {"config": config.to_dict(), "latency_ms": last["latency_ms"], "acc": last["acc"],
            "start_acc": state["steps"][0]["acc"], "start_latency_ms": state["steps"][0]["latency_ms"],
            "target_ms": target_ms, "steps": len(state["steps"]) - 1,
            "files": {k: os.path.join(out_dir, v) for k, v in
                      (("architecture", ARCH_JSON), ("trajectory", TRAJECTORY), ("plot", PLOT_FILE),
                       ("model", MODEL_FILE))}}


def plot_trajectory(state: dict, path: str) -> None:
    """PNG: predicted latency and proxy top-1 per step, with the target line."""
    matplotlib = require("matplotlib", "search", "the trajectory chart")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s["step"] for s in state["steps"]]
    fig, ax1 = plt.subplots(figsize=(8, 4.5))
    ax1.plot(steps, [s["latency_ms"] for s in state["steps"]], "o-", color="tab:blue", label="predicted latency")
    ax1.axhline(state["target_ms"], color="tab:blue", ls="--", lw=1, label="target")
    ax1.set_xlabel("slimming step")
    ax1.set_ylabel(f"LUT latency (ms, {state.get('lut_device')})", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.errorbar(steps, [s["acc"] for s in state["steps"]], yerr=[s.get("acc_se", 0) for s in state["steps"]],
                 fmt="s-", color="tab:red", capsize=3, label="proxy top-1 ± SE")
    ax2.set_ylabel("held-out top-1 (%), supernet weights", color="tab:red")
    for s in state["steps"][1:]:
        ax1.annotate(s["action"][0], (s["step"], s["latency_ms"]), fontsize=7, xytext=(0, 4),
                     textcoords="offset points", ha="center")
    handles = ax1.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax1.legend(handles, [h.get_label() for h in handles], loc="lower left", fontsize=8)
    ax1.set_title("latency-driven slimming (d = depth, m = MB3D, w = width)")
    fig.tight_layout()
    with writing(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def summary_table(state: dict) -> str:
    """Markdown table of the trajectory (one row per step)."""
    rows = ["| step | action | widths | depths | vit | latency ms | top-1 % ± SE | drop %/ms ± paired SE | decided by |",
            "|---:|---|---|---|---:|---:|---:|---:|---|"]
    for s in state["steps"]:
        a = Arch.from_dict(s["arch"])
        ratio = "" if s["drop_per_ms"] is None else f"{s['drop_per_ms']:.3f} ± {s['drop_per_ms_se']:.3f}"
        rows.append(f"| {s['step']} | {s['action']} | {','.join(map(str, a.widths))} | "
                    f"{','.join(map(str, a.depths))} | {a.num_vit} | {s['latency_ms']:.3f} | "
                    f"{s['acc']:.2f} ± {s['acc_se']:.2f} | {ratio} | {s.get('decided_by', '')} |")
    n = len(state["steps"]) - 1
    rows.append(f"\n{state.get('steps_decided_within_noise', 0)} of {n} steps were decided within noise: the best "
                f"candidates' accuracy drops per ms were within {state.get('noise_z', NOISE_Z)} paired SE of each other, "
                "so the loss, then the paper's importance score, chose among them (see `candidates` in the trajectory)")
    return "\n".join(rows)


# --------------------------------------------------------------------------- CLI
def main(argv):
    from absl import flags

    from search import train_supernet as ts

    FLAGS = flags.FLAGS
    del argv
    started = time.time()
    check_run_directory(FLAGS.out)
    lut_doc = load_lut(FLAGS.lut)
    target_ms = resolve_target(FLAGS.target, FLAGS["target-like"].value, lut_doc)  # fail fast, before training
    if FLAGS["check-drift"].value:
        target_ms = _target_in_lut_ms(target_ms, FLAGS["target-like"].value, FLAGS.lut, lut_doc)
    supernet_dir = FLAGS.supernet
    if supernet_dir is None:
        _check_default_supernet_reaches(target_ms, lut_doc, FLAGS["allow-empty-stages"].value)
        supernet_dir = os.path.join(FLAGS.out, "supernet")
        print(f"no --supernet: training a short one on {FLAGS.data!r} into {supernet_dir} (resumable)")
        ts.train_supernet(supernet_dir, data=FLAGS.data, data_dir=FLAGS["data-dir"].value, seed=FLAGS.seed,
                          **ts.QUICK_SETTINGS)
    result = slim(supernet_dir, FLAGS.out, target=target_ms, lut=lut_doc, data=FLAGS.data,
                  data_dir=FLAGS["data-dir"].value, seed=FLAGS.seed, eval_images=FLAGS["eval-images"].value,
                  calibration_images=FLAGS["calibration-images"].value,
                  allow_empty_stages=FLAGS["allow-empty-stages"].value)
    with open(result["files"]["trajectory"]) as f:
        print(summary_table(json.load(f)))
    c = result["config"]
    print(f"\nslimmed: widths {c['widths']} depths {c['depths']} num_vit {c['num_vit']} -> "
          f"{result['latency_ms']:.3f} ms predicted (target {result['target_ms']:.3f} ms; supernet "
          f"{result['start_latency_ms']:.3f} ms), proxy top-1 {result['acc']:.2f} % "
          f"(supernet {result['start_acc']:.2f} %), {result['steps']} steps, {time.time() - started:.0f} s")
    for k, v in result["files"].items():
        print(f"  {k:12s} {v}")


def _target_in_lut_ms(target_ms: float, target_like, lut_path, lut: dict) -> float:
    """--check-drift: re-times the LUT's reference models now and converts a target in today's ms to the LUT's."""
    from android_ios_bench.host.cli import check_lut
    from android_ios_bench.lut import default_lut_path

    if target_like is not None:
        raise SlimError("--check-drift converts a --target given in today's milliseconds; --target-like is already "
                        "in the LUT's milliseconds, so drop one of them")
    statistic = lut.get("correction", {}).get("statistic", "median_ms")
    drift = check_lut(lut_path or default_lut_path(), log=lambda m: print(m, file=sys.stderr, flush=True))
    scale = drift["scale"][statistic]
    print(f"drift: this host runs at x{scale:.3f} of the LUT's session ({statistic} of {len(drift['models'])} "
          f"reference models): target {target_ms:.3f} ms today = {target_ms / scale:.3f} ms on the LUT")
    return target_ms / scale


def _check_default_supernet_reaches(target_ms: float, lut: dict, allow_empty_stages: bool) -> None:
    """The reachable-range check for the supernet the CLI would train, before spending minutes on it."""
    from search.train_supernet import DEFAULT_SUPERNET as cfg

    check_lut_covers(lut, cfg)
    lo, hi, _ = reachable_range(cfg, lut, 0 if allow_empty_stages else 1)
    check_target_reachable(target_ms, lo, hi, lut)


def define_flags():
    """Defines this tool's flags (called by `run`, so importing the module defines none)."""
    from absl import flags

    flags.DEFINE_string("target", None, "latency target in ms on the LUT's device")
    flags.DEFINE_string("target-like", None, "use the LUT latency of l1, l3 or l7 as the target")
    flags.DEFINE_string("lut", None, "LUT JSON (default: the embedded host LUT)")
    flags.DEFINE_string("supernet", None, "trained supernet directory (default: train a short one into OUT/supernet)")
    flags.DEFINE_string("data", "embedded", "dataset: embedded (Fashion-MNIST subset), digits, fashion_mnist, "
                                            "a tfds name or an ImageFolder directory")
    flags.DEFINE_string("data-dir", None, "tfds data directory")
    flags.DEFINE_string("out", "runs/slim", "output directory")
    flags.DEFINE_integer("seed", 0, "random seed")
    flags.DEFINE_integer("eval-images", DEFAULT_EVAL_IMAGES, "held-out images used to score candidates")
    flags.DEFINE_boolean("check-drift", False, "re-time the LUT's reference models on this host first and read "
                         "--target in today's milliseconds (host LUTs only)")
    flags.DEFINE_boolean("allow-empty-stages", False, "let slimming remove every block of a stage (default: each "
                         "stage keeps at least one MetaBlock)")
    flags.DEFINE_integer("calibration-images", DEFAULT_CALIBRATION_IMAGES,
                         "training images for BatchNorm re-estimation of each candidate (0: off)")


def run():
    """Console entry point (`ef-slim`): flags, then `main` with one-line errors for bad input."""
    from ef_keras.cli import run as run_cli

    define_flags()
    run_cli(main)


if __name__ == "__main__":
    run()
