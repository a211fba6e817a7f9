"""Latency-driven slimming of a trained supernet (paper §3.3, step 3); the main job's entry point.

    python -m search.slim --target-like l1                    # trains the quick supernet first, then slims
    python -m search.slim --target 9.5 --supernet runs/supernet --actions all --out runs/slim
    python -m search.slim --target 1.6 --lut iphone12_coreml.json --supernet DIR   # the paper's setting

Start: the supernet's largest child, stages 1-3 in MB4D and every stage-4 MetaPath in MB3D
(the MB3D action turns attention into conv only when the data says so). Each step:

1. builds the candidate actions (`search.actions`, `--actions paper|all|random`) and predicts
   each result's latency from the LUT (`android_ios_bench.predictor`, deployment resolution),
   keeping only actions predicted to save more than the LUT's smallest trusted saving
   (`smallest_trusted_saving`: savings its Δ-latency validation found not to be real are
   below it, e.g. a 16-channel stage-4 narrowing on the host table);
2. scores candidates on the *search-validation* split with inherited weights
   (`search.evaluate.Scorer`: BatchNorm re-estimated per child on training images). In
   "all" mode every candidate is screened on `screen_images`, and the best candidate of the
   best `confirm_top` action groups (kind and stage) is confirmed on `confirm_images` other
   images (NetAdapt-style); in "paper" mode the three candidates go straight to confirmation;
3. takes the candidate with the smallest held-out **cross-entropy increase per ms saved**
   when it beats every other confirmed candidate by more than 1.96 paired standard errors
   ("loss", the primary criterion); otherwise among those tied with it the accuracy drop per
   ms decides if it separates them ("accuracy"), else the importance score of what the action
   removes ("importance"; never the order of the actions) — `choose`.

Repeat until the predicted latency is <= the target. Every candidate's loss and accuracy
deltas per ms ± paired SE, the screening results and the rule that decided are in the
trajectory; the summary counts the steps decided by the primary criterion. The held-out
test split is read once, at the end, for the final numbers only.

Ablations: `--importance uniform` ignores α (every importance score 1); `--actions random`
takes a random legal action per step (nothing scored).

State: `<out>/trajectory.json` is rewritten atomically after every step, and a re-run with
the same inputs resumes after the last finished step; the inputs (target, LUT and supernet
contents, data, scoring settings) are recorded in `<out>/run.json` (`ef_keras.runs`) and a
re-run with other inputs is refused, naming what differs. Outputs in `<out>`:
`architecture.json` (an EfficientFormerConfig), `trajectory.json` + `trajectory.png`,
`slimmed.keras` (inherited weights, at the supernet's proxy input size) and a summary table.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import numpy as np

from ef_keras.errors import EfKerasError, require
from search import actions as actions_lib
from search.arch import Arch, full_arch, smallest_arch
from search.evaluate import Scorer, load_split, search_splits, standard_error
from search.scoring import IMPORTANCE_MODES, attention_scores, path_scores, uniform_probabilities

TRAJECTORY = "trajectory.json"
ARCH_JSON = "architecture.json"
MODEL_FILE = "slimmed.keras"
PLOT_FILE = "trajectory.png"
#: A difference is signal when it exceeds NOISE_Z paired standard errors (two-sided 95 %).
NOISE_Z = 1.96


def slim_settings() -> dict:
    """How the quick job scores candidates (64 px children on 2 cores).

    Screening sees 500 search-validation images per candidate, confirmation 2,000 others
    (the split has 4,000); BatchNorm is re-estimated on 256 training images per child.
    """
    return dict(actions="paper", importance="alpha", screen_images=500, confirm_images=2000, confirm_top=3,
                calibration_images=256)


class SlimError(EfKerasError):
    """Bad slimming input (target, LUT, supernet, split sizes): one line saying what to do."""


# --------------------------------------------------------------------------- latency
def load_lut(path=None) -> dict:
    """The LUT document at `path`, or the embedded host LUT; SlimError when missing or invalid."""
    from android_ios_bench import lut as L

    try:
        lut = L.load_default_lut() if path is None else L.load_lut(path)
    except L.LUTError as e:
        raise SlimError(str(e)) from e
    except OSError as e:
        raise SlimError(f"cannot read LUT {path}: {e.strerror or e}") from e
    family = lut["search_space"].get("family", "v1")
    if family != "v1":
        raise SlimError(f"LUT {path} was measured for the {family} family's units; the slimming searches "
                        "EfficientFormer (V1): give a V1 LUT (the default, or android_ios_bench.host --lut-out)")
    return lut


def predict_ms(config, lut: dict) -> float:
    """Predicted deployment latency (ms) of an EfficientFormerConfig from the LUT."""
    from android_ios_bench.lut import LUTError
    from android_ios_bench.predictor import predict

    try:
        return float(predict(config, lut, exact=True).ms)  # no interpolated unit: the LUT measures the grid
    except LUTError as e:
        raise SlimError(f"the LUT does not cover architecture {config.widths}/{config.depths}: {e}") from e


def check_lut_covers(lut: dict, space) -> None:
    """SlimError unless the LUT measured every unit of the supernet's width grid at 224 (no interpolation)."""
    from android_ios_bench.lut import LUTError
    from android_ios_bench.predictor import check_search_space

    try:
        check_search_space(lut, input_size=224, min_widths=tuple(space.min_widths), max_widths=tuple(space.max_widths),
                           width_step=space.width_step)
    except LUTError as e:
        raise SlimError(f"the LUT does not cover the supernet's width grid ({list(space.min_widths)} to "
                        f"{list(space.max_widths)} in steps of {space.width_step} at 224): {e}") from e


# --------------------------------------------------------------------------- decisions
def _better(a: np.ndarray, b: np.ndarray, z: float = NOISE_Z) -> bool:
    """Whether per-image values a are lower than b (same images) by more than z paired standard errors."""
    d = a - b
    return float(d.mean()) < -z * standard_error(d)


def _plausible_best(candidates: list[dict], indices: list[int], key: str, z: float) -> list[int]:
    """The candidates no other one beats by more than z paired SEs on per-image `key` (lower is better)."""
    return [i for i in indices
            if not any(j != i and _better(candidates[j][key], candidates[i][key], z) for j in indices)]


def choose(candidates: list[dict], z: float = NOISE_Z) -> tuple[int, list[int], str]:
    """The action slimming takes: (index of the winner, indices tied with it on the loss, the rule).

    Each candidate holds per-image arrays `dloss` (cross-entropy increase per ms saved) and
    `drop` (top-1 points lost per ms saved) against the current network, on the same images,
    and its `importance`. The rule:

    1. keep the candidates no other beats on loss increase per ms by more than z paired
       standard errors; if one is left, it wins ("loss": the primary criterion);
    2. among those, keep the ones no other beats on accuracy drop per ms by more than z
       paired SEs; if one is left, it wins ("accuracy");
    3. otherwise the least important removal among them wins ("importance"), then the
       smaller mean loss increase; the order of the actions never decides.
    """
    if not candidates:
        raise ValueError("no candidates to choose from")
    tied = _plausible_best(candidates, list(range(len(candidates))), "dloss", z)
    if len(tied) == 1:
        return tied[0], tied, "loss"
    close = _plausible_best(candidates, tied, "drop", z)
    if len(close) == 1:
        return close[0], tied, "accuracy"
    return min(close, key=lambda i: (candidates[i]["importance"], float(candidates[i]["dloss"].mean()))), tied, \
        "importance"


# --------------------------------------------------------------------------- targets
#: The paper's iPhone 12 CoreML latencies (ms), which users often type as a --target.
PAPER_IPHONE_MS = {"l1": 1.6, "l3": 3.0, "l7": 7.0}


def reachable_range(space, lut: dict, min_depth: int = 1) -> tuple[float, float, Arch]:
    """(smallest reachable latency, the supernet's own latency, the starting Arch) of a space."""
    start = full_arch(space, space.depths[3])
    lo = predict_ms(smallest_arch(space, min_depth).to_config(space), lut)
    hi = predict_ms(start.to_config(space), lut)
    return lo, hi, start


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


# --------------------------------------------------------------------------- the search
def _check_options(actions: str, importance: str, screen_images, confirm_images, confirm_top,
                   calibration_images) -> None:
    from ef_keras.checks import check_int

    if actions not in actions_lib.ACTION_MODES:
        raise SlimError(f"--actions must be one of {', '.join(actions_lib.ACTION_MODES)}, got {actions!r}")
    if importance not in IMPORTANCE_MODES:
        raise SlimError(f"--importance must be one of {', '.join(IMPORTANCE_MODES)}, got {importance!r}")
    for name, value, low in (("screen_images", screen_images, 1), ("confirm_images", confirm_images, 2),
                             ("confirm_top", confirm_top, 1), ("calibration_images", calibration_images, 0)):
        check_int(name, value, low=low, error=SlimError)


def _settings(supernet_dir: str, lut: dict, target_ms: float, data: str, seed: int, options: dict,
              min_depth: int, min_saving: float) -> dict:
    """Everything that decides the search's result: the resume key of `ef_keras.runs`."""
    from ef_keras.runs import files_sha256
    from search.supernet import SUPERNET_JSON, WEIGHTS_FILE

    return {"supernet_sha256": files_sha256(*(os.path.join(supernet_dir, n) for n in (SUPERNET_JSON, WEIGHTS_FILE))),
            "lut_sha256": hashlib.sha256(json.dumps(lut, sort_keys=True).encode()).hexdigest(),
            "target_ms": target_ms, "data": data, "seed": seed, **options, "min_depth": min_depth,
            "min_saving": min_saving, "noise_z": NOISE_Z}


def _load_scoring_data(data, data_dir, image_size, splits, screen_images, confirm_images, calibration_images,
                       actions):
    """(screen (x, y) or None, confirm (x, y), calibration x or None): disjoint images of the search splits."""
    from ef_keras import data as ef_data

    available = ef_data.split_size(data, splits["search_val"], data_dir)
    needed = confirm_images + (screen_images if actions == "all" else 0)
    if available is not None and needed > available:
        raise SlimError(f"--actions {actions} needs {needed} search-validation images (screen {screen_images if actions == 'all' else 0} "
                        f"+ confirm {confirm_images}) but {data} has {available} in {splits['search_val']}: lower "
                        "--screen-images / --confirm-images")
    val_x, val_y = load_split(data, splits["search_val"], image_size, data_dir, max_images=needed)
    screen = (val_x[confirm_images:], val_y[confirm_images:]) if actions == "all" else None
    confirm = (val_x[:confirm_images], val_y[:confirm_images])
    calibration = (load_split(data, splits["search_train"], image_size, data_dir, max_images=calibration_images)[0]
                   if calibration_images else None)
    return screen, confirm, calibration


def slim(supernet_dir: str, out_dir: str, *, target=None, target_like=None, lut=None, data="embedded",
         data_dir=None, seed: int = 0, actions: str = "paper", importance: str = "alpha", screen_images: int = 500,
         confirm_images: int = 2000, confirm_top: int = 3, calibration_images: int = 256,
         allow_empty_stages: bool = False, log=print) -> dict:
    """Runs (or resumes) the slimming search; returns the final summary.

    Args:
        supernet_dir: a directory written by `search.train_supernet`.
        out_dir: where the outputs and the resumable state go.
        target / target_like: the latency target in ms on the LUT's device, or a variant name
            whose LUT latency is the target.
        lut: a LUT path or document (None: the embedded host LUT).
        data, data_dir: the dataset the supernet was trained on (its search splits score).
        seed: keys the state and the random ablation's draws.
        actions, importance: candidate sets and how α is read (module docstring).
        screen_images, confirm_images, confirm_top: screening ("all" mode) and confirmation sizes.
        calibration_images: training images for each child's BatchNorm statistics (0: off).
        allow_empty_stages: let the depth action remove the last block of a stage.
    """
    import keras

    from ef_keras.output import check_run_directory, write_json
    from ef_keras.runs import record_settings, resume_settings
    from search.supernet import SupernetError, load_supernet

    out_dir = check_run_directory(out_dir)
    _check_options(actions, importance, screen_images, confirm_images, confirm_top, calibration_images)
    keras.utils.set_random_seed(seed)
    lut_doc = lut if isinstance(lut, dict) else load_lut(lut)
    target_ms = resolve_target(target, target_like, lut_doc)
    try:
        supernet, meta = load_supernet(supernet_dir)
    except SupernetError as e:
        raise SlimError(str(e)) from e
    _check_finite_supernet(supernet, supernet_dir)
    _check_same_data(meta, data, supernet_dir)
    space = supernet.space
    check_lut_covers(lut_doc, space)
    min_depth = 0 if allow_empty_stages else 1
    lo, hi, start = reachable_range(space, lut_doc, min_depth)
    check_target_reachable(target_ms, lo, hi, lut_doc)
    options = dict(actions=actions, importance=importance, screen_images=screen_images, confirm_images=confirm_images,
                   confirm_top=confirm_top, calibration_images=calibration_images)
    from android_ios_bench.predictor import smallest_trusted_saving

    min_saving = smallest_trusted_saving(lut_doc)
    settings = _settings(supernet_dir, lut_doc, target_ms, data, seed, options, min_depth, min_saving)
    recorded = resume_settings(out_dir, settings, error=SlimError)
    splits = meta.get("training", {}).get("splits") or search_splits()
    screen, confirm, calibration = _load_scoring_data(data, data_dir, supernet.image_size, splits, screen_images,
                                                      confirm_images, calibration_images, actions)
    os.makedirs(out_dir, exist_ok=True)
    if not recorded:
        record_settings(out_dir, settings)

    probabilities = (uniform_probabilities(supernet.path_stage) if importance == "uniform"
                     else supernet.probabilities())
    scores, attention = path_scores(probabilities, supernet.path_stage), attention_scores(probabilities,
                                                                                          supernet.path_stage)
    step_ctx = _StepContext(supernet, Scorer(supernet, calibration), lut_doc, scores, attention, min_depth, min_saving,
                            actions, confirm_top, screen, confirm, seed)
    state_path = os.path.join(out_dir, TRAJECTORY)
    state = _load_state(state_path)
    if state is None:
        now = step_ctx.score(start)
        state = {"target_ms": target_ms, "target_like": target_like, "seed": seed, "options": options,
                 "supernet": os.path.abspath(supernet_dir), "lut_device": lut_doc.get("device", {}).get("name"),
                 "reachable_ms": [lo, hi], "splits": splits, "path_scores": scores.tolist(),
                 "attention_scores": attention.tolist(), "min_depth": min_depth, "min_saving": min_saving,
                 "noise_z": NOISE_Z, "done": False,
                 "steps": [_record(0, None, start, hi, now, "", [], [])]}
        write_json(state_path, state)
    else:
        log(f"resuming {state_path} after step {state['steps'][-1]['step']}")
        now = step_ctx.score(Arch.from_dict(state["steps"][-1]["arch"]))
    cur = state["steps"][-1]
    arch = Arch.from_dict(cur["arch"])
    log(f"slimming {hi:.3f} -> {target_ms:.3f} ms (reachable {lo:.3f}-{hi:.3f}), actions {actions}, importance "
        f"{importance}, {len(confirm[1])} confirmation images" +
        (f", {len(screen[1])} screening" if screen else "") +
        f"; an action must save > {100 * min_saving:.2f} % (the LUT's smallest trusted saving)")
    while cur["latency_ms"] > target_ms:
        t0 = time.time()
        best, evaluated, screened, tied, rule = step_ctx.step(arch, now, cur["latency_ms"], len(state["steps"]))
        if best is None:
            raise SlimError(f"no action lowers the latency below {cur['latency_ms']:.3f} ms by more than "
                            f"{100 * min_saving:.2f} % (the LUT's smallest trusted saving); "
                            f"target {target_ms:.3f} ms not reachable" +
                            ("" if allow_empty_stages else " while every stage keeps a block (--allow-empty-stages)"))
        arch, now = best["arch"], (best["per_image"], best["screen_per_image"])
        cur = _record(cur["step"] + 1, best, arch, best["latency_ms"], now, rule,
                      [_summary(c, i in tied) for i, c in enumerate(evaluated)], screened)
        state["steps"].append(cur)
        state["steps_decided_by"] = _rule_counts(state["steps"])
        write_json(state_path, state)
        log(f"step {cur['step']:2d}  {best['kind']:5s} {best['desc'][:44]:44s} {arch.describe():34s} "
            f"{cur['latency_ms']:7.3f} ms  top-1 {cur['acc']:5.2f} %  by {rule:10s} ({time.time() - t0:.0f} s)")

    final = _finish(supernet, arch, state, out_dir, target_ms, calibration, data, data_dir, step_ctx)
    state["done"] = True
    write_json(state_path, state)
    return final


class _StepContext:
    """What every slimming step reads: the supernet, scorer, LUT, importance, data and mode."""

    def __init__(self, supernet, scorer, lut, scores, attention, min_depth, min_saving, actions, confirm_top, screen,
                 confirm, seed):
        self.supernet, self.scorer, self.lut, self.scores, self.attention = supernet, scorer, lut, scores, attention
        self.min_depth, self.min_saving, self.actions, self.confirm_top = min_depth, min_saving, actions, confirm_top
        self.screen, self.confirm, self.seed = screen, confirm, seed

    def score(self, arch: Arch):
        """(per-image results on the confirmation images, on the screening images or None)."""
        confirm = self.scorer(arch, *self.confirm)
        return confirm, (self.scorer(arch, *self.screen) if self.screen else None)

    def step(self, arch: Arch, now, latency_ms: float, step: int):
        """(winner, confirmed candidates, screening summary, tied indices, rule) of one step."""
        space = self.supernet.space
        rng = np.random.default_rng([self.seed, step])
        predicted = {}

        def saves(candidate: Arch) -> bool:
            predicted[candidate] = predict_ms(candidate.to_config(space), self.lut)
            return predicted[candidate] < latency_ms * (1.0 - self.min_saving)  # a saving the LUT can be trusted on

        cands = [{"kind": c.kind, "group": c.group, "desc": c.desc, "arch": c.arch, "importance": c.importance,
                  "latency_ms": predicted[c.arch], "saved_ms": latency_ms - predicted[c.arch]}
                 for c in actions_lib.candidates(self.actions, arch, space, self.scores, self.attention,
                                                 self.supernet.path_stage, self.min_depth, rng, saves=saves)]
        if not cands:
            return None, [], [], [], ""
        screened = []
        if self.actions == "all":
            for c in cands:
                c["screen_per_image"] = self.scorer(c["arch"], *self.screen)
                c["screen_dloss"] = float((c["screen_per_image"][1] - now[1][1]).mean() / c["saved_ms"])
            best_of_group = {}
            for c in sorted(cands, key=lambda c: c["screen_dloss"]):
                best_of_group.setdefault(c["group"], c)
            confirmed = list(best_of_group.values())[:self.confirm_top]
            screened = [{"kind": c["kind"], "group": c["group"], "desc": c["desc"], "saved_ms": c["saved_ms"],
                         "loss_per_ms": c["screen_dloss"], "confirmed": any(c is d for d in confirmed)}
                        for c in cands]
        else:
            confirmed = cands
        for c in confirmed:
            correct, losses = self.scorer(c["arch"], *self.confirm)
            c["per_image"] = (correct, losses)
            c["screen_per_image"] = c.get("screen_per_image")
            c["dloss"] = (losses - now[0][1]) / c["saved_ms"]
            c["drop"] = 100.0 * (now[0][0].astype("float64") - correct) / c["saved_ms"]
        if self.actions == "random":
            return confirmed[0], confirmed, screened, [0], "random"
        won, tied, rule = choose(confirmed)
        return confirmed[won], confirmed, screened, tied, rule


def _rule_counts(steps: list[dict]) -> dict:
    counts: dict[str, int] = {}
    for s in steps[1:]:
        counts[s["decided_by"]] = counts.get(s["decided_by"], 0) + 1
    return counts


def _check_finite_supernet(supernet, directory: str) -> None:
    """SlimError when the supernet's weights or α hold NaN/Inf (a diverged training run)."""
    import keras

    for v in supernet.weights:
        if not np.all(np.isfinite(keras.ops.convert_to_numpy(v))):
            raise SlimError(f"supernet {directory} has non-finite values in {v.path}: its training diverged; "
                            "retrain it with a lower --lr")


def _check_same_data(meta: dict, data: str, directory: str) -> None:
    """SlimError when the supernet was trained on another dataset than the one that would score it."""
    trained_on = meta.get("training", {}).get("data")
    if trained_on is not None and trained_on != data:
        raise SlimError(f"supernet {directory} was trained on --data {trained_on}, but slimming would score it on "
                        f"--data {data}: pass --data {trained_on}, or train a supernet on {data}")


def _summary(c: dict, tied: bool) -> dict:
    """The JSON record of one confirmed candidate: latency, accuracy, loss and accuracy deltas per ms ± paired SE."""
    correct, losses = c["per_image"]
    return {"kind": c["kind"], "group": c["group"], "desc": c["desc"], "latency_ms": c["latency_ms"],
            "saved_ms": c["saved_ms"], "acc": 100.0 * float(correct.mean()), "loss": float(losses.mean()),
            "loss_per_ms": float(c["dloss"].mean()), "loss_per_ms_se": standard_error(c["dloss"]),
            "drop_per_ms": float(c["drop"].mean()), "drop_per_ms_se": standard_error(c["drop"]),
            "importance": c["importance"], "tied_with_winner": tied}


def _record(step, chosen, arch, latency, now, decided_by, candidates, screened):
    (correct, losses), _ = now
    rec = {"step": step, "action": chosen["kind"] if chosen else "start",
           "desc": chosen["desc"] if chosen else "the supernet's largest child", "arch": arch.to_dict(),
           "latency_ms": latency, "acc": 100.0 * float(correct.mean()),
           "acc_se": 100.0 * standard_error(correct.astype("float64")), "loss": float(losses.mean()),
           "decided_by": decided_by, "candidates": candidates, "screened": screened}
    for key, value in (("loss_per_ms", "dloss"), ("drop_per_ms", "drop")):
        rec[key] = None if chosen is None else float(chosen[value].mean())
        rec[key + "_se"] = None if chosen is None else standard_error(chosen[value])
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


def _finish(supernet, arch: Arch, state: dict, out_dir: str, target_ms: float, calibration, data, data_dir,
            step_ctx) -> dict:
    """Writes architecture JSON, the inherited-weights model and the plot; scores start and end on the test split."""
    from ef_keras.saving import save_model
    from search.evaluate import per_image
    from search.supernet import child_model

    name = f"slim_{target_ms:.3g}ms".replace(".", "p")
    config = arch.to_config(supernet.space, name=name)
    config.save(os.path.join(out_dir, ARCH_JSON))
    model = child_model(supernet, arch, name=name, calibration=calibration)
    save_model(model, os.path.join(out_dir, MODEL_FILE))
    test_x, test_y = load_split(data, None, supernet.image_size, data_dir)
    start = Arch.from_dict(state["steps"][0]["arch"])
    state["test"] = {"images": int(len(test_y)), "what": "inherited supernet weights, BatchNorm recalibrated",
                     "start_acc": 100.0 * float(step_ctx.scorer(start, test_x, test_y)[0].mean()),
                     "final_acc": 100.0 * float(per_image(model, test_x, test_y)[0].mean())}
    plot_trajectory(state, os.path.join(out_dir, PLOT_FILE))
    last = state["steps"][-1]
    return {"config": config.to_dict(), "latency_ms": last["latency_ms"], "acc": last["acc"],
            "start_acc": state["steps"][0]["acc"], "start_latency_ms": state["steps"][0]["latency_ms"],
            "target_ms": target_ms, "steps": len(state["steps"]) - 1, "test": state["test"],
            "decided_by": _rule_counts(state["steps"]),
            "files": {k: os.path.join(out_dir, v) for k, v in
                      (("architecture", ARCH_JSON), ("trajectory", TRAJECTORY), ("plot", PLOT_FILE),
                       ("model", MODEL_FILE))}}


def plot_trajectory(state: dict, path: str) -> None:
    """PNG: predicted latency and search-validation top-1 per step, the target line, the deciding rule."""
    from ef_keras.output import writing

    matplotlib = require("matplotlib", "search", "the trajectory chart")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s["step"] for s in state["steps"]]
    fig, ax1 = plt.subplots(figsize=(9, 4.8))
    ax1.plot(steps, [s["latency_ms"] for s in state["steps"]], "o-", color="tab:blue", label="predicted latency")
    ax1.axhline(state["target_ms"], color="tab:blue", ls="--", lw=1, label="target")
    ax1.set_xlabel("slimming step")
    ax1.set_ylabel(f"LUT latency (ms, {state.get('lut_device')})", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.errorbar(steps, [s["acc"] for s in state["steps"]], yerr=[s.get("acc_se", 0) for s in state["steps"]],
                 fmt="s-", color="tab:red", capsize=3, label="search-val top-1 ± SE")
    ax2.set_ylabel("search-validation top-1 (%), supernet weights", color="tab:red")
    for s in state["steps"][1:]:
        label = {"depth": "d", "mb3d": "m", "width": "w"}.get(s["action"], "?") + \
            ("" if s["decided_by"] == "loss" else "*")
        ax1.annotate(label, (s["step"], s["latency_ms"]), fontsize=8, xytext=(0, 5), textcoords="offset points",
                     ha="center")
    handles = ax1.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax1.legend(handles, [h.get_label() for h in handles], loc="lower left", fontsize=8)
    ax1.set_title("latency-driven slimming (d depth, m MB3D->MB4D, w width; * = not decided by the loss)")
    fig.tight_layout()
    with writing(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def summary_table(state: dict) -> str:
    """Markdown table of the trajectory (one row per step) and the count of steps per deciding rule."""
    rows = ["| step | action | widths | depths | vit | latency ms | top-1 % ± SE | loss/ms ± paired SE | decided by |",
            "|---:|---|---|---|---:|---:|---:|---:|---|"]
    for s in state["steps"]:
        a = Arch.from_dict(s["arch"])
        ratio = "" if s["loss_per_ms"] is None else f"{s['loss_per_ms']:.4f} ± {s['loss_per_ms_se']:.4f}"
        rows.append(f"| {s['step']} | {s['action']} | {','.join(map(str, a.widths))} | "
                    f"{','.join(map(str, a.depths))} | {a.num_vit} | {s['latency_ms']:.3f} | "
                    f"{s['acc']:.2f} ± {s['acc_se']:.2f} | {ratio} | {s['decided_by']} |")
    n = len(state["steps"]) - 1
    counts = _rule_counts(state["steps"])
    rows.append(f"\n{counts.get('loss', 0)} of {n} steps were decided by the primary criterion (held-out loss per ms, "
                f"winner ahead of every other confirmed candidate by > {state['noise_z']} paired SE); "
                + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k != "loss"))
    if "test" in state:
        t = state["test"]
        rows.append(f"held-out test split ({t['images']} images, never seen by the search; {t['what']}): "
                    f"start {t['start_acc']:.2f} %, slimmed {t['final_acc']:.2f} %")
    return "\n".join(rows)


# --------------------------------------------------------------------------- CLI
def main(argv):
    from absl import flags

    from search import train_supernet as ts

    FLAGS = flags.FLAGS
    del argv
    started = time.time()
    from ef_keras.output import check_run_directory

    check_run_directory(FLAGS.out)
    _check_options(FLAGS.actions, FLAGS.importance, FLAGS["screen-images"].value, FLAGS["confirm-images"].value,
                   FLAGS["confirm-top"].value, FLAGS["calibration-images"].value)
    lut_doc = load_lut(FLAGS.lut)
    target_ms = resolve_target(FLAGS.target, FLAGS["target-like"].value, lut_doc)  # fail fast, before training
    if FLAGS["check-drift"].value:
        target_ms = _target_in_lut_ms(target_ms, FLAGS["target-like"].value, FLAGS.lut, lut_doc)
    supernet_dir = FLAGS.supernet
    train_seconds = 0.0
    if supernet_dir is None:
        space = ts.default_space()
        check_lut_covers(lut_doc, space)
        lo, hi, _ = reachable_range(space, lut_doc, 0 if FLAGS["allow-empty-stages"].value else 1)
        check_target_reachable(target_ms, lo, hi, lut_doc)
        supernet_dir = os.path.join(FLAGS.out, "supernet")
        print(f"no --supernet: training the quick supernet on {FLAGS.data!r} into {supernet_dir} (resumable)",
              flush=True)
        t0 = time.time()
        ts.train_supernet(supernet_dir, space=space, data=FLAGS.data, data_dir=FLAGS["data-dir"].value,
                          seed=FLAGS.seed, **ts.quick_settings())
        train_seconds = time.time() - t0
    t0 = time.time()
    result = slim(supernet_dir, FLAGS.out, target=target_ms, lut=lut_doc, data=FLAGS.data,
                  data_dir=FLAGS["data-dir"].value, seed=FLAGS.seed, actions=FLAGS.actions,
                  importance=FLAGS.importance, screen_images=FLAGS["screen-images"].value,
                  confirm_images=FLAGS["confirm-images"].value, confirm_top=FLAGS["confirm-top"].value,
                  calibration_images=FLAGS["calibration-images"].value,
                  allow_empty_stages=FLAGS["allow-empty-stages"].value,
                  log=lambda m: print(m, flush=True))
    with open(result["files"]["trajectory"]) as f:
        print("\n" + summary_table(json.load(f)))
    c = result["config"]
    total = time.time() - started
    print(f"\nslimmed: widths {c['widths']} depths {c['depths']} num_vit {c['num_vit']} -> "
          f"{result['latency_ms']:.3f} ms predicted (target {result['target_ms']:.3f} ms; supernet "
          f"{result['start_latency_ms']:.3f} ms), {result['steps']} steps, {total:.0f} s "
          f"(supernet {train_seconds:.0f} s = {100 * train_seconds / total:.0f} %, slimming "
          f"{time.time() - t0:.0f} s = {100 * (time.time() - t0) / total:.0f} %)")
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


def define_flags():
    """Defines this tool's flags (called by `run`, so importing the module defines none)."""
    from absl import flags

    d = slim_settings()
    flags.DEFINE_string("target", None, "latency target in ms on the LUT's device")
    flags.DEFINE_string("target-like", None, "use the LUT latency of l1, l3 or l7 as the target")
    flags.DEFINE_string("lut", None, "LUT JSON (default: the embedded host LUT)")
    flags.DEFINE_string("supernet", None, "trained supernet directory (default: train the quick one into "
                                          "OUT/supernet)")
    flags.DEFINE_string("data", "embedded", "dataset: embedded (Fashion-MNIST subset), digits, fashion_mnist, "
                                            "a tfds name or an ImageFolder directory")
    flags.DEFINE_string("data-dir", None, "tfds data directory")
    flags.DEFINE_string("out", "runs/slim", "output directory")
    flags.DEFINE_integer("seed", 0, "random seed")
    flags.DEFINE_string("actions", d["actions"], "candidates per step: paper (the paper's three), all (every "
                        "removal and width step, screened then confirmed) or random (null ablation)")
    flags.DEFINE_string("importance", d["importance"], "alpha (the trained supernet's) or uniform (null ablation)")
    flags.DEFINE_integer("screen-images", d["screen_images"], "search-validation images per screened candidate "
                         "(--actions all)")
    flags.DEFINE_integer("confirm-images", d["confirm_images"], "search-validation images per confirmed candidate")
    flags.DEFINE_integer("confirm-top", d["confirm_top"], "action groups confirmed after screening (--actions all)")
    flags.DEFINE_integer("calibration-images", d["calibration_images"],
                         "training images for BatchNorm re-estimation of each candidate (0: off)")
    flags.DEFINE_boolean("check-drift", False, "re-time the LUT's reference models on this host first and read "
                         "--target in today's milliseconds (host LUTs only)")
    flags.DEFINE_boolean("allow-empty-stages", False, "let slimming remove every block of a stage (default: each "
                         "stage keeps at least one MetaBlock)")


def run():
    """Console entry point (`ef-slim`): flags, then `main` with one-line errors for bad input."""
    from ef_keras.cli import run as run_cli

    define_flags()
    run_cli(main)


if __name__ == "__main__":
    run()
