"""Latency-driven slimming of a trained supernet (paper §3.3, step 3).

    python -m search.slim --target 9.5                       # embedded host LUT, trains a supernet first
    python -m search.slim --target-like l1 --supernet runs/supernet --out runs/slim
    python -m search.slim --target 1.6 --lut iphone12_coreml.json --supernet DIR   # the paper's setting

Start: the whole supernet as a sub-network (every MetaPath its 4D block; stage 4 closed by
the 3D blocks its α prefers, `scoring.initial_num_vit`). Each step applies every applicable
action (`actions.py`: depth, first-MB3D, width), predicts each result's latency with the LUT
(`search.lut.predict`, deployment resolution) and measures its top-1 on the held-out split
with weights inherited from the supernet (`supernet.child_model`: identity = block dropped,
width = leading channels sliced; BatchNorm statistics re-estimated on 256 training images,
as Once-for-All does, since both change what every later BatchNorm sees). The action with the smallest accuracy drop per ms saved
wins (ties: smaller loss increase per ms, then action order); repeat until the predicted
latency is <= the target.

State: `<out>/trajectory.json` is rewritten atomically after every step; a re-run with the
same inputs resumes after the last finished step (a different target, LUT, supernet or seed
starts over). Outputs in `<out>`: `architecture.json` (EfficientFormerConfig), `trajectory.json`
+ `trajectory.png`, `slimmed.keras` (inherited weights, at the supernet's proxy input size)
and a printed summary table.
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
from search.scoring import initial_num_vit, path_scores
from search.supernet import (SUPERNET_JSON, WEIGHTS_FILE, SupernetError, child_model, load_supernet,
                             write_json_atomic)

TRAJECTORY = "trajectory.json"
ARCH_JSON = "architecture.json"
MODEL_FILE = "slimmed.keras"
PLOT_FILE = "trajectory.png"
#: At most this many held-out images are used to score candidates (all of the embedded set's 360).
DEFAULT_EVAL_IMAGES = 2000
#: Training images used to re-estimate BatchNorm statistics of every candidate (0: keep the supernet's).
DEFAULT_CALIBRATION_IMAGES = 256


class SlimError(ValueError):
    """Bad slimming input (target, LUT, supernet): one line saying what to do."""


# --------------------------------------------------------------------------- latency
def load_lut(path=None) -> dict:
    """The LUT document at `path`, or the embedded host LUT; SlimError when missing or invalid."""
    from android_ios_bench import lut as L

    try:
        return L.load_default_lut() if path is None else L.load_lut(path)
    except L.LUTError as e:
        raise SlimError(str(e)) from None
    except OSError as e:
        raise SlimError(f"cannot read LUT {path}: {e.strerror or e}") from None


def predict_ms(config, lut: dict) -> float:
    """Predicted deployment latency (ms) of an EfficientFormerConfig from the LUT."""
    from android_ios_bench.lut import LUTError
    from search.lut import predict

    try:
        return float(predict(config, lut).ms)
    except LUTError as e:
        raise SlimError(f"the LUT does not cover architecture {config.widths}/{config.depths}: {e}") from None


def check_lut_covers(lut: dict, supernet_config) -> None:
    """SlimError unless the LUT's search space covers every width/resolution of the supernet."""
    from android_ios_bench.lut import LUTError, check_search_space

    try:
        check_search_space(lut, input_size=224, max_widths=tuple(supernet_config.widths))
    except LUTError as e:
        raise SlimError(f"the LUT does not cover the supernet (widths {list(supernet_config.widths)} at 224): "
                        f"{e}") from None


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


def evaluate(model, x: np.ndarray, y: np.ndarray, batch_size: int = 120) -> tuple[float, float]:
    """(top-1 % , mean cross-entropy) of `model` on (x, y), inference mode."""
    import keras

    correct, loss = 0, 0.0
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size], training=False)
        logits = np.asarray(keras.ops.convert_to_numpy(logits), "float64")
        t = y[i:i + batch_size]
        correct += int(np.sum(np.argmax(logits, -1) == t))
        z = logits - logits.max(-1, keepdims=True)
        loss += float(np.sum(np.log(np.exp(z).sum(-1)) - z[np.arange(len(t)), t]))
    return 100.0 * correct / len(x), loss / len(x)


# --------------------------------------------------------------------------- the search
def _fingerprint(supernet_dir: str, lut: dict, target: float, seed: int, eval_n: str) -> str:
    h = hashlib.sha256()
    for name in (SUPERNET_JSON, WEIGHTS_FILE):
        with open(os.path.join(supernet_dir, name), "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    h.update(json.dumps(lut, sort_keys=True).encode())
    h.update(f"{target!r}/{seed}/{eval_n}".encode())
    return h.hexdigest()[:16]


def reachable_range(supernet, lut: dict) -> tuple[float, float, Arch]:
    """(smallest reachable latency, the supernet's own latency, the starting Arch)."""
    start = full_arch(supernet.config, initial_num_vit(supernet.probabilities(), supernet.path_stage))
    lo = predict_ms(smallest_arch(supernet.config).to_config(supernet.config), lut)
    hi = predict_ms(start.to_config(supernet.config), lut)
    return lo, hi, start


def resolve_target(target, target_like, lut: dict) -> float:
    """The target in ms: --target, or the LUT latency of a named model (--target-like)."""
    if (target is None) == (target_like is None):
        raise SlimError("give exactly one of --target MS or --target-like l1|l3|l7")
    if target_like is not None:
        from ef_keras.config import VARIANTS

        if target_like.lower() not in VARIANTS:
            raise SlimError(f"--target-like must be one of {sorted(VARIANTS)}, got {target_like!r}")
        return predict_ms(VARIANTS[target_like.lower()], lut)
    try:
        target = float(target)
    except (TypeError, ValueError):
        raise SlimError(f"--target must be a number of milliseconds, got {target!r}") from None
    if not np.isfinite(target) or target <= 0:
        raise SlimError(f"--target must be a positive number of milliseconds, got {target}")
    return target


def slim(supernet_dir: str, out_dir: str, *, target=None, target_like=None, lut=None, data="embedded",
         data_dir=None, seed: int = 0, eval_images: int = DEFAULT_EVAL_IMAGES,
         calibration_images: int = DEFAULT_CALIBRATION_IMAGES, log=print) -> dict:
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
    """
    import keras

    keras.utils.set_random_seed(seed)
    lut_doc = lut if isinstance(lut, dict) else load_lut(lut)
    target_ms = resolve_target(target, target_like, lut_doc)
    try:
        supernet, _ = load_supernet(supernet_dir)
    except SupernetError as e:
        raise SlimError(str(e)) from None
    check_lut_covers(lut_doc, supernet.config)
    lo, hi, start = reachable_range(supernet, lut_doc)
    if target_ms < lo or target_ms > hi:
        raise SlimError(f"target {target_ms:.3f} ms is outside what this supernet can reach on this LUT: "
                        f"{lo:.3f} ms (smallest architecture) to {hi:.3f} ms (the supernet itself)")

    os.makedirs(out_dir, exist_ok=True)
    x, y = load_eval_split(data, supernet.image_size, data_dir, eval_images, seed)
    calib = (load_eval_split(data, supernet.image_size, data_dir, calibration_images, seed, split="train")[0]
             if calibration_images else None)
    scores = path_scores(supernet.probabilities(), supernet.path_stage)
    fingerprint = _fingerprint(supernet_dir, lut_doc, target_ms, seed, f"{len(y)}/{calibration_images}")
    state_path = os.path.join(out_dir, TRAJECTORY)
    state = _load_state(state_path, fingerprint)
    cfg = supernet.config
    if state is None:
        acc, loss = evaluate(child_model(supernet, start, calibration=calib), x, y)
        state = {"fingerprint": fingerprint, "target_ms": target_ms, "target_like": target_like, "seed": seed,
                 "supernet": os.path.abspath(supernet_dir), "lut_device": lut_doc.get("device", {}).get("name"),
                 "reachable_ms": [lo, hi], "eval_images": int(len(y)), "path_scores": scores.tolist(),
                 "done": False,
                 "steps": [_record(0, "start", "whole supernet", start, hi, acc, loss, None, [])]}
        write_json_atomic(state_path, state)
    else:
        log(f"resuming {state_path} after step {state['steps'][-1]['step']}")
    cur = state["steps"][-1]
    arch = Arch.from_dict(cur["arch"])
    log(f"slimming to {target_ms:.3f} ms (reachable {lo:.3f}-{hi:.3f} ms) on {len(y)} held-out images")
    while cur["latency_ms"] > target_ms:
        t0 = time.time()
        evaluated = []
        for order, (name, cand, desc) in enumerate(actions_lib.candidates(arch, scores, supernet.path_stage)):
            lat = predict_ms(cand.to_config(cfg), lut_doc)
            saved = cur["latency_ms"] - lat
            if saved <= 0:
                continue
            acc, loss = evaluate(child_model(supernet, cand, calibration=calib), x, y)
            evaluated.append({"action": name, "desc": desc, "arch": cand.to_dict(), "latency_ms": lat, "acc": acc,
                              "loss": loss, "saved_ms": saved, "drop_per_ms": (cur["acc"] - acc) / saved,
                              "loss_per_ms": (loss - cur["loss"]) / saved, "order": order})
        if not evaluated:
            raise SlimError(f"no action lowers the latency below {cur['latency_ms']:.3f} ms; "
                            f"target {target_ms:.3f} ms not reachable")
        best = min(evaluated, key=lambda c: (c["drop_per_ms"], c["loss_per_ms"], c["order"]))
        arch = Arch.from_dict(best["arch"])
        cur = _record(cur["step"] + 1, best["action"], best["desc"], arch, best["latency_ms"], best["acc"],
                      best["loss"], best["drop_per_ms"],
                      [{k: c[k] for k in ("action", "latency_ms", "acc", "drop_per_ms")} for c in evaluated])
        state["steps"].append(cur)
        write_json_atomic(state_path, state)
        log(f"step {cur['step']:3d}  {best['action']:5s}  {arch.describe():40s}  {cur['latency_ms']:8.3f} ms  "
            f"top-1 {cur['acc']:6.2f} %  ({time.time() - t0:.1f} s)  {best['desc']}")

    final = _finish(supernet, arch, state, out_dir, target_ms, calib)
    state["done"] = True
    write_json_atomic(state_path, state)
    return final


def _record(step, action, desc, arch, latency, acc, loss, drop_per_ms, candidates):
    return {"step": step, "action": action, "desc": desc, "arch": arch.to_dict(), "latency_ms": latency,
            "acc": acc, "loss": loss, "drop_per_ms": drop_per_ms, "candidates": candidates}


def _load_state(path: str, fingerprint: str):
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None  # unreadable state: start over (it is rewritten atomically, so this is rare)
    return state if state.get("fingerprint") == fingerprint and state.get("steps") else None


def _finish(supernet, arch: Arch, state: dict, out_dir: str, target_ms: float, calibration) -> dict:
    """Writes architecture JSON, the inherited-weights model and the plot; returns a summary dict."""
    name = f"slim_{target_ms:.3g}ms".replace(".", "p")
    config = arch.to_config(supernet.config, name=name)
    config.save(os.path.join(out_dir, ARCH_JSON))
    model = child_model(supernet, arch, name=name, calibration=calibration)
    tmp = os.path.join(out_dir, f".tmp{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, os.path.join(out_dir, MODEL_FILE))
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s["step"] for s in state["steps"]]
    fig, ax1 = plt.subplots(figsize=(8, 4.5))
    ax1.plot(steps, [s["latency_ms"] for s in state["steps"]], "o-", color="tab:blue", label="predicted latency")
    ax1.axhline(state["target_ms"], color="tab:blue", ls="--", lw=1, label="target")
    ax1.set_xlabel("slimming step")
    ax1.set_ylabel(f"LUT latency (ms, {state.get('lut_device')})", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(steps, [s["acc"] for s in state["steps"]], "s-", color="tab:red", label="proxy top-1")
    ax2.set_ylabel("held-out top-1 (%), supernet weights", color="tab:red")
    for s in state["steps"][1:]:
        ax1.annotate(s["action"][0], (s["step"], s["latency_ms"]), fontsize=7, xytext=(0, 4),
                     textcoords="offset points", ha="center")
    handles = ax1.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax1.legend(handles, [h.get_label() for h in handles], loc="lower left", fontsize=8)
    ax1.set_title("latency-driven slimming (d = depth, m = MB3D, w = width)")
    fig.tight_layout()
    tmp = f"{path}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def summary_table(state: dict) -> str:
    """Markdown table of the trajectory (one row per step)."""
    rows = ["| step | action | widths | depths | vit | latency ms | top-1 % | drop %/ms |",
            "|---:|---|---|---|---:|---:|---:|---:|"]
    for s in state["steps"]:
        a = Arch.from_dict(s["arch"])
        ratio = "" if s["drop_per_ms"] is None else f"{s['drop_per_ms']:.3f}"
        rows.append(f"| {s['step']} | {s['action']} | {','.join(map(str, a.widths))} | "
                    f"{','.join(map(str, a.depths))} | {a.num_vit} | {s['latency_ms']:.3f} | {s['acc']:.2f} | {ratio} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- CLI
def main(argv):
    from absl import flags

    from search import train_supernet as ts

    FLAGS = flags.FLAGS
    del argv
    started = time.time()
    try:
        lut_doc = load_lut(FLAGS.lut)
        target_ms = resolve_target(FLAGS.target, FLAGS.target_like, lut_doc)  # fail fast, before training
        supernet_dir = FLAGS.supernet
        if supernet_dir is None:
            supernet_dir = os.path.join(FLAGS.out, "supernet")
            print(f"no --supernet: training a short one on {FLAGS.data!r} into {supernet_dir} (resumable)")
            ts.train_supernet(supernet_dir, data=FLAGS.data, data_dir=FLAGS.data_dir, seed=FLAGS.seed,
                              **ts.QUICK_SETTINGS)
        result = slim(supernet_dir, FLAGS.out, target=target_ms, lut=lut_doc, data=FLAGS.data,
                      data_dir=FLAGS.data_dir, seed=FLAGS.seed, eval_images=FLAGS.eval_images,
                      calibration_images=FLAGS.calibration_images)
    except ValueError as e:  # SlimError, SupernetError, DatasetError, ConfigError: one line each
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    with open(result["files"]["trajectory"]) as f:
        print(summary_table(json.load(f)))
    c = result["config"]
    print(f"\nslimmed: widths {c['widths']} depths {c['depths']} num_vit {c['num_vit']} -> "
          f"{result['latency_ms']:.3f} ms predicted (target {result['target_ms']:.3f} ms; supernet "
          f"{result['start_latency_ms']:.3f} ms), proxy top-1 {result['acc']:.2f} % "
          f"(supernet {result['start_acc']:.2f} %), {result['steps']} steps, {time.time() - started:.0f} s")
    for k, v in result["files"].items():
        print(f"  {k:12s} {v}")


def _define_flags():
    from absl import flags

    flags.DEFINE_string("target", None, "latency target in ms on the LUT's device")
    flags.DEFINE_string("target_like", None, "use the LUT latency of l1, l3 or l7 as the target")
    flags.DEFINE_string("lut", None, "LUT JSON (default: the embedded host LUT)")
    flags.DEFINE_string("supernet", None, "trained supernet directory (default: train a short one into OUT/supernet)")
    flags.DEFINE_string("data", "embedded", "dataset: embedded, a tfds name or an ImageFolder directory")
    flags.DEFINE_string("data_dir", None, "tfds data directory")
    flags.DEFINE_string("out", "runs/slim", "output directory")
    flags.DEFINE_integer("seed", 0, "random seed")
    flags.DEFINE_integer("eval_images", DEFAULT_EVAL_IMAGES, "held-out images used to score candidates")
    flags.DEFINE_integer("calibration_images", DEFAULT_CALIBRATION_IMAGES,
                         "training images for BatchNorm re-estimation of each candidate (0: off)")


if __name__ == "__main__":
    from absl import app

    from search._cli import dashed_flags

    _define_flags()
    app.run(main, argv=dashed_flags())
