"""Slimming: scores, the three actions, the stopping rule, determinism, resume, outputs and bad inputs.

Uses a tiny supernet trained for a few steps on the digits and a complete synthetic
LUT (the LUT helper's own units and schema, latency = multiply-adds / 1e7 ms).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from android_ios_bench import lut as L
from android_ios_bench.predictor import predict
from android_ios_bench.units import SearchSpace, search_space_units
from ef_keras.models.efficientformer.config import EfficientFormerConfig
from ef_keras.models.efficientformer.model import EfficientFormer
from search import actions
from search.arch import Arch
from search.scoring import initial_num_vit, path_scores, stage_scores
from search.slim import (SlimError, check_target_reachable, choose, load_eval_split, predict_ms, reachable_range,
                         slim, summary_table)
from search.supernet import child_model, load_supernet
from search.train_supernet import train_supernet

CFG = EfficientFormerConfig(widths=(32, 32, 48, 64), depths=(2, 1, 2, 2), num_vit=0, name="tiny_supernet")
PATH_STAGE = [0, 0, 1, 2, 2, 3, 3]


def synthetic_lut(max_widths=CFG.widths):
    """A complete, schema-valid LUT of the space up to `max_widths`; ms = unit multiply-adds / 1e7."""
    space = SearchSpace(max_widths=tuple(max_widths))
    doc = L.new_lut(device={"name": "synthetic"}, runtime={"name": "litert", "precision": "fp32"},
                    measurement={"tool": "tests", "date": L.now_iso(), "runs": 1}, search_space=space.to_dict())
    for u in search_space_units(space):
        f, hw = u.unit, u.unit["res"] ** 2
        macs = {"stem": hw / 16 * 9 * 3 * f["cout"] * 1.5, "meta4d": hw * 8 * f["cin"] ** 2,
                "downsample": hw / 4 * 9 * f["cin"] * f["cout"], "flat": hw * f["cin"] / 2,
                "meta3d": hw * (2560 * f["cin"] + 8 * f["cin"] ** 2) + 1280 * hw * hw,
                "head": hw * f["cin"] + 2 * f["cin"] * f["cout"]}[u.kind]
        doc["entries"][u.key] = L.make_entry(u.kind, u.unit, {"median_ms": macs / 1e7 + 0.01, "runs": 1})
    L.validate_lut(doc)
    return doc


@pytest.fixture(scope="module")
def lut():
    return synthetic_lut()


@pytest.fixture(scope="module")
def supernet_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("supernet")
    keras.utils.set_random_seed(0)
    train_supernet(str(out), config=CFG, data="digits", image_size=64, epochs=2, warmup_epochs=1, batch_size=128,
                   mixing="soft", progress=False)
    return str(out)


@pytest.fixture(scope="module")
def mid_target(supernet_dir, lut):
    net, _ = load_supernet(supernet_dir)
    lo, hi, _ = reachable_range(net.config, lut)
    return lo + 0.45 * (hi - lo)


# ----------------------------------------------------------------------------- scores
def test_scores_follow_the_paper():
    p = np.array([[0.6, 0.0, 0.4], [0.5, 0.0, 0.5], [0.5, 0.0, 0.5], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8],
                  [0.3, 0.6, 0.1], [0.25, 0.25, 0.5]])
    s = path_scores(p, PATH_STAGE)
    expected = [0.6 / 0.4, 1.0, 1.0, (0.2 + 0.3) / 0.5, 0.2 / 0.8, 0.9 / 0.1, 1.0]
    np.testing.assert_allclose(s, expected)
    arch = Arch(CFG.widths, (("4d", "id"), ("4d",), ("4d", "4d"), ("4d", "3d")))
    np.testing.assert_allclose(stage_scores(s, PATH_STAGE, arch), [1.5, 1.0, 1.25, 10.0])
    assert initial_num_vit(p, PATH_STAGE) == 0  # last stage-4 path prefers 4D (0.25 vs 0.25 is no preference)
    p[6] = [0.2, 0.3, 0.5]
    assert initial_num_vit(p, PATH_STAGE) == 2
    with pytest.raises(ValueError, match="shape"):
        path_scores(p[:3], PATH_STAGE)


# ----------------------------------------------------------------------------- actions
SCORES = np.array([3.0, 0.5, 2.0, 1.0, 4.0, 0.7, 5.0])
ARCH = Arch(CFG.widths, (("4d", "4d"), ("4d",), ("4d", "4d"), ("4d", "3d")))


def test_depth_action_removes_the_least_important_active_path():
    new, desc = actions.depth_action(ARCH, SCORES, PATH_STAGE)
    assert new.choices == (("4d", "id"), ("4d",), ("4d", "4d"), ("4d", "3d")) and "stage 1 path 1" in desc
    newer, _ = actions.depth_action(new, SCORES, PATH_STAGE)  # next: stage 4 path 0 (score 0.7)
    assert newer.choices[3] == ("id", "3d")
    empty = Arch(CFG.widths, tuple(("id",) * d for d in CFG.depths))
    assert actions.depth_action(empty, SCORES, PATH_STAGE) is None


def test_mb3d_action_turns_the_first_3d_block_into_4d():
    arch = Arch(CFG.widths, (("4d", "4d"), ("4d",), ("4d", "4d"), ("3d", "3d")))
    new, _ = actions.mb3d_action(arch, SCORES, PATH_STAGE)
    assert new.choices[3] == ("4d", "3d") and new.num_vit == 1
    new.validate(CFG)
    assert actions.mb3d_action(Arch(CFG.widths, ARCH.choices[:3] + (("4d", "4d"),)), SCORES, PATH_STAGE) is None


def test_width_action_shrinks_the_least_important_stage_by_16():
    new, _ = actions.width_action(ARCH, SCORES, PATH_STAGE)  # stage scores 3.5, 2, 5, 5.7 -> stage 2
    assert new.widths == (32, 16, 48, 64)
    new2, _ = actions.width_action(new, SCORES, PATH_STAGE)  # stage 2 is at 16: next least important, stage 1
    assert new2.widths == (16, 16, 48, 64)
    assert actions.width_action(Arch((16,) * 4, ARCH.choices), SCORES, PATH_STAGE) is None
    assert [name for name, _, _ in actions.candidates(ARCH, SCORES, PATH_STAGE)] == ["depth", "mb3d", "width"]


def test_stage_guard_keeps_one_block_per_stage():
    lone = Arch(CFG.widths, (("4d", "id"), ("4d",), ("id", "4d"), ("4d", "3d")))  # stages 1-3 have one block left
    new, desc = actions.depth_action(lone, SCORES, PATH_STAGE, min_depth=1)
    assert new.choices[3] == ("id", "3d") and "stage 4 path 0" in desc  # the only stage with two blocks
    assert actions.depth_action(new, SCORES, PATH_STAGE, min_depth=1) is None
    unguarded, _ = actions.depth_action(lone, SCORES, PATH_STAGE)
    assert unguarded.choices[3] == ("id", "3d")  # the least important path overall (0.7) either way
    again, _ = actions.depth_action(unguarded, SCORES, PATH_STAGE)
    assert again.choices[1] == ("id",)  # without the guard stage 2 loses its only block (score 2.0)


def test_importance_is_the_score_of_what_the_action_removes():
    new, _ = actions.depth_action(ARCH, SCORES, PATH_STAGE)
    assert actions.importance("depth", ARCH, new, SCORES, PATH_STAGE) == 0.5
    new, _ = actions.mb3d_action(ARCH, SCORES, PATH_STAGE)
    assert actions.importance("mb3d", ARCH, new, SCORES, PATH_STAGE) == 5.0
    new, _ = actions.width_action(ARCH, SCORES, PATH_STAGE)
    assert actions.importance("width", ARCH, new, SCORES, PATH_STAGE) == 2.0  # stage 2's score (its one path)


# ----------------------------------------------------------------------------- the decision rule
def _cand(correct_now, correct, loss_now, loss, saved, importance):
    return {"drop": 100.0 * (correct_now.astype(float) - correct) / saved, "dloss": (loss - loss_now) / saved,
            "importance": importance}


def test_choose_takes_a_clear_accuracy_winner():
    n = 2000
    now = np.ones(n, bool)
    loss_now = np.full(n, 0.2)
    few = now.copy(); few[:10] = False  # 10 images lost
    many = now.copy(); many[:300] = False  # 300 images lost for the same saving
    cands = [_cand(now, many, loss_now, loss_now + 0.5, 1.0, 0.1), _cand(now, few, loss_now, loss_now + 0.9, 1.0, 9.0)]
    assert choose(cands) == (1, [1], "accuracy")


def test_choose_breaks_accuracy_ties_by_loss_then_importance_never_by_order():
    n = 2000
    rng = np.random.default_rng(0)
    now = np.ones(n, bool)
    loss_now = rng.uniform(0.1, 0.3, n)
    a = now.copy(); a[:20] = False
    b = now.copy(); b[5:26] = False  # one image more lost than a: within noise
    low, high = loss_now + 0.01, loss_now + 0.30
    won, tied, rule = choose([_cand(now, a, loss_now, high, 1.0, 0.1), _cand(now, b, loss_now, low, 1.0, 5.0)])
    assert (won, sorted(tied), rule) == (1, [0, 1], "loss")  # b loses one image more, but far less loss
    same = [_cand(now, a, loss_now, low, 1.0, 3.0), _cand(now, a, loss_now, low, 1.0, 0.5)]
    assert choose(same)[0::2] == (1, "importance")
    assert choose(same[::-1])[0::2] == (0, "importance")  # the same candidate wins in either order


def test_noise_rule_scales_with_the_number_of_images():
    """40 vs 60 lost images out of 10,000 is signal; 4 vs 6 out of 1,000 is not."""
    def pair(n, lost_a, lost_b):
        now = np.ones(n, bool)
        a, b = now.copy(), now.copy()
        a[:lost_a] = False
        b[n - lost_b:] = False
        loss = np.zeros(n)
        return [_cand(now, a, loss, loss, 1.0, 1.0), _cand(now, b, loss, loss, 1.0, 2.0)]
    assert choose(pair(10_000, 40, 60))[2] == "accuracy"
    assert choose(pair(1_000, 4, 6))[2] == "importance"


# ----------------------------------------------------------------------------- the search
def test_slim_stops_at_first_step_under_target_and_picks_best_ratio(supernet_dir, lut, mid_target, tmp_path):
    result = slim(supernet_dir, str(tmp_path), target=mid_target, lut=lut, data="digits", log=lambda *_: None)
    state = json.loads((tmp_path / "trajectory.json").read_text())
    lat = [s["latency_ms"] for s in state["steps"]]
    assert lat[-1] <= mid_target < min(lat[:-1])  # stopped at the first step meeting the target
    assert all(b < a for a, b in zip(lat, lat[1:]))
    for step in state["steps"][1:]:
        assert step["decided_by"] in ("accuracy", "loss", "importance")
        winner = [c for c in step["candidates"] if c["action"] == step["action"]]
        assert len(winner) == 1 and winner[0]["tied_with_winner"] and winner[0]["acc_se"] > 0
        if step["decided_by"] == "accuracy":  # every other candidate lost outside noise
            assert not any(c["tied_with_winner"] for c in step["candidates"] if c is not winner[0])
    assert state["steps_decided_within_noise"] == sum(s["decided_by"] != "accuracy" for s in state["steps"][1:])
    assert all(d >= 1 for d in Arch.from_dict(state["steps"][-1]["arch"]).depths)  # the stage guard
    # the architecture JSON builds with ef_keras at deployment size and its latency is the last step's
    config = EfficientFormerConfig.load(result["files"]["architecture"])
    assert predict_ms(config, lut) == pytest.approx(lat[-1])
    assert EfficientFormer(config, input_shape=(224, 224, 3), classes=10).output.shape == (None, 10)
    # the saved model carries the inherited weights: same accuracy as the trajectory's last step
    net, _ = load_supernet(supernet_dir)
    model = keras.saving.load_model(result["files"]["model"])
    calibration = load_eval_split("digits", 64, max_images=256, split="train")[0]
    final = child_model(net, Arch.from_dict(state["steps"][-1]["arch"]), calibration=calibration)
    # the last step's accuracy drop and loss increase per ms, from outside the trajectory: its and the previous
    # step's sub-networks scored here on the held-out images (NumPy) and priced by the latency predictor. (On
    # this fixture every step keeps the same top-1, so the drop is 0 and the loss carries the signal.)
    x_eval, y_eval = load_eval_split("digits", net.image_size)

    def scored(arch, child=None):
        child = child or child_model(net, Arch.from_dict(arch), calibration=calibration)
        logits = np.asarray(child.predict(x_eval, verbose=0), np.float64)
        z = logits - logits.max(-1, keepdims=True)
        cross_entropy = np.log(np.exp(z).sum(-1)) - z[np.arange(len(y_eval)), y_eval]
        return 100.0 * np.mean(np.argmax(logits, -1) == y_eval), cross_entropy.mean()

    prev, last = state["steps"][-2:]
    (acc_prev, loss_prev), (acc_last, loss_last) = scored(prev["arch"]), scored(last["arch"], final)
    saved_ms = (predict(Arch.from_dict(prev["arch"]).to_config(net.config), lut).ms
                - predict(Arch.from_dict(last["arch"]).to_config(net.config), lut).ms)
    assert last["drop_per_ms"] == pytest.approx((acc_prev - acc_last) / saved_ms, abs=1e-9)
    assert last["loss_per_ms"] == pytest.approx((loss_last - loss_prev) / saved_ms, rel=1e-4)
    assert os.path.getsize(result["files"]["plot"]) > 10_000
    assert summary_table(state).count("\n") == len(state["steps"]) + 3


def test_same_seed_same_architecture_and_resume(supernet_dir, lut, mid_target, tmp_path):
    first = slim(supernet_dir, str(tmp_path / "a"), target=mid_target, lut=lut, data="digits", log=lambda *_: None)
    path = tmp_path / "a" / "trajectory.json"
    state = json.loads(path.read_text())
    assert len(state["steps"]) >= 3
    state["steps"] = state["steps"][:2]  # as if killed right after step 1 was written
    state["done"] = False
    path.write_text(json.dumps(state))
    lines = []
    resumed = slim(supernet_dir, str(tmp_path / "a"), target=mid_target, lut=lut, data="digits", log=lines.append)
    assert any("resuming" in line for line in lines)
    assert sum("step" in line and "ms" in line for line in lines) == len(json.loads(path.read_text())["steps"]) - 2
    assert resumed["config"] == first["config"]
    with pytest.raises(SlimError, match=r"other settings \(target_ms="):  # another target needs another --out
        slim(supernet_dir, str(tmp_path / "a"), target=mid_target * 1.01, lut=lut, data="digits")
    again = slim(supernet_dir, str(tmp_path / "b"), target=mid_target, lut=lut, data="digits", log=lambda *_: None)
    assert again["config"] == first["config"]


# ----------------------------------------------------------------------------- bad input
def test_bad_targets(supernet_dir, lut, tmp_path):
    net, _ = load_supernet(supernet_dir)
    lo, hi, _ = reachable_range(net.config, lut)
    for target, match in [(0, "positive"), (-1.0, "positive"), ("fast", "number"), (lo * 0.5, "below"),
                          (hi * 1.5, "above")]:
        with pytest.raises(SlimError, match=match):
            slim(supernet_dir, str(tmp_path), target=target, lut=lut)
    with pytest.raises(SlimError, match=f"{lo:.3f} ms .* to {hi:.3f} ms"):
        slim(supernet_dir, str(tmp_path), target=lo / 2, lut=lut)
    assert lo < 1.6 < hi  # the synthetic LUT reaches 1.6 ms, but it is the paper's iPhone figure
    with pytest.raises(SlimError, match="iPhone 12 CoreML"):
        slim(supernet_dir, str(tmp_path), target=1.6, lut=lut)
    with pytest.raises(SlimError, match="exactly one"):
        slim(supernet_dir, str(tmp_path), lut=lut)
    with pytest.raises(SlimError, match="above"):  # L7 is far slower than this tiny supernet
        slim(supernet_dir, str(tmp_path), target_like="l7", lut=synthetic_lut((96, 192, 384, 768)))
    assert not (tmp_path / "trajectory.json").exists()


def test_target_below_range_explains_the_paper_figure_and_the_way_there(tmp_path):
    lut = {"device": {"name": "host-x86_64-2cpu"}}
    with pytest.raises(SlimError) as e:
        check_target_reachable(1.6, 9.0, 25.0, lut)
    message = str(e.value)
    assert "\n" not in message and "9.000 ms" in message and "25.000 ms" in message
    assert "iPhone 12 CoreML" in message and "--lut" in message and "--target-like l1" in message
    check_target_reachable(12.0, 9.0, 25.0, lut)  # inside: no error
    with pytest.raises(SlimError, match="the paper's iPhone figure"):  # reachable here, but a unit mix-up
        check_target_reachable(1.6, 1.0, 25.0, lut)
    check_target_reachable(1.6, 1.0, 25.0, {"device": {"name": "iphone12-coreml"}})
    proc = subprocess.run([sys.executable, "-m", "search.slim", "--target", "1.6", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "iPhone 12 CoreML" in last and "--target-like l1" in last and "host" in last
    assert not (tmp_path / "o" / "supernet").exists()  # refused before training


def test_nonfinite_supernet_is_refused(supernet_dir, lut, mid_target, tmp_path):
    import shutil

    broken = tmp_path / "nan_supernet"
    shutil.copytree(supernet_dir, broken)
    net, _ = load_supernet(str(broken))
    net.alpha.assign(np.full(net.alpha.shape, np.nan, "float32"))
    from search.supernet import save_supernet
    save_supernet(net, str(broken), extra=json.loads((broken / "supernet.json").read_text()))
    with pytest.raises(SlimError, match="non-finite values in .*alpha"):
        slim(str(broken), str(tmp_path / "out"), target=mid_target, lut=lut, data="digits")


def test_bad_luts_and_supernets(supernet_dir, lut, mid_target, tmp_path):
    with pytest.raises(SlimError, match="does not cover the supernet"):
        slim(supernet_dir, str(tmp_path), target=mid_target, lut=synthetic_lut((32, 32, 32, 64)))
    broken = tmp_path / "broken.json"
    doc = json.loads(json.dumps(lut))
    del doc["entries"][next(iter(doc["entries"]))]["median_ms"]
    broken.write_text(json.dumps(doc))
    with pytest.raises(SlimError, match="median_ms"):
        slim(supernet_dir, str(tmp_path), target=mid_target, lut=str(broken))
    with pytest.raises(SlimError):
        slim(supernet_dir, str(tmp_path), target=mid_target, lut=str(tmp_path / "missing.json"))
    with pytest.raises(SlimError, match="holds no trained supernet"):
        slim(str(tmp_path / "none"), str(tmp_path), target=mid_target, lut=lut)


def test_cli_prints_one_line_errors(tmp_path):
    lut_path = tmp_path / "lut.json"
    L.save_lut(synthetic_lut(), str(lut_path))
    cmd = [sys.executable, "-m", "search.slim", "--target", "-3", "--lut", str(lut_path), "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "error: --target must be a positive number of milliseconds, got -3.0"
    assert "Traceback" not in proc.stderr
