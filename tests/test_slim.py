"""Slimming: normalised scores, the action modes, the decision rule, splits, the planted-signal test,
the ablations, stopping, resume, outputs and bad inputs.

Uses a tiny elastic supernet on the digits and a complete synthetic LUT (the LUT helper's own
units and schema, latency = multiply-adds / 1e7 ms). Expected values are written out by hand.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from android_ios_bench import lut as L
from android_ios_bench.units import SearchSpace as LUTSpace
from android_ios_bench.units import search_space_units
from ef_keras.models.efficientformer.config import EfficientFormerConfig
from ef_keras.models.efficientformer.model import EfficientFormer
from search import actions
from search.arch import Arch
from search.evaluate import load_split, search_splits
from search.scoring import attention_scores, path_scores, stage_scores, uniform_probabilities
from search.slim import (SlimError, check_target_reachable, choose, predict_ms, reachable_range, slim,
                         summary_table)
from search.space import SearchSpace
from search.supernet import Supernet, child_model, load_supernet, save_supernet
from search.train_supernet import train_supernet

SPACE = SearchSpace(EfficientFormerConfig(widths=(32, 32, 48, 64), depths=(2, 1, 2, 2), num_vit=0,
                                          layer_scale_init=0.3, name="tiny_supernet"), min_widths=(16, 16, 32, 48))
PATH_STAGE = [0, 0, 1, 2, 2, 3, 3]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIET = dict(log=lambda *_: None)


def synthetic_lut(max_widths=SPACE.max_widths):
    """A complete, schema-valid LUT of the space up to `max_widths`; ms = unit multiply-adds / 1e7."""
    space = LUTSpace(min_widths=tuple(min(lo, hi) for lo, hi in zip(SPACE.min_widths, max_widths)),
                     max_widths=tuple(max_widths), named=())
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
    train_supernet(str(out), space=SPACE, data="digits", image_size=64, epochs=2, warmup_epochs=1, batch_size=128,
                   rule="uniform", **QUIET)
    return str(out)


@pytest.fixture(scope="module")
def mid_target(lut):
    lo, hi, _ = reachable_range(SPACE, lut)
    return lo + 0.6 * (hi - lo)


SMALL = dict(confirm_images=120, screen_images=60, calibration_images=32)


# ----------------------------------------------------------------------------- scores
def test_uniform_alpha_scores_every_path_and_stage_one():
    p = uniform_probabilities(PATH_STAGE)
    np.testing.assert_allclose(p[0], [0.5, 0.0, 0.5])
    np.testing.assert_allclose(p[3], [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(path_scores(p, PATH_STAGE), 1.0)
    np.testing.assert_allclose(attention_scores(p, PATH_STAGE), [0, 0, 0, 1, 1, 1, 1])
    arch = Arch(SPACE.max_widths, (("4d", "4d"), ("4d",), ("4d", "id"), ("4d", "3d")))
    assert stage_scores(path_scores(p, PATH_STAGE), PATH_STAGE, arch) == [1.0, 1.0, 1.0, 1.0]


def test_scores_normalise_the_papers_ratios():
    p = np.array([[0.6, 0.0, 0.4], [0.5, 0.0, 0.5], [0.5, 0.0, 0.5], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8],
                  [0.3, 0.6, 0.1], [0.25, 0.25, 0.5]])
    # stages 1-2: p4D/pI; stages 3-4: (p3D + p4D)/pI / 2 (its value under uniform alpha)
    expected = [1.5, 1.0, 1.0, 0.5, 0.125, 4.5, 0.5]
    np.testing.assert_allclose(path_scores(p, PATH_STAGE), expected)
    np.testing.assert_allclose(attention_scores(p, PATH_STAGE), [0, 0, 0, 1.5, 1.0, 2.0, 1.0])
    arch = Arch(SPACE.max_widths, (("4d", "id"), ("4d",), ("4d", "4d"), ("4d", "3d")))
    # stage means over the active paths: stage 1 only path 0 is active
    np.testing.assert_allclose(stage_scores(np.array(expected), PATH_STAGE, arch), [1.5, 1.0, 0.3125, 2.5])
    with pytest.raises(ValueError, match="shape"):
        path_scores(p[:3], PATH_STAGE)


# ----------------------------------------------------------------------------- actions
SCORES = np.array([3.0, 0.5, 2.0, 1.0, 4.0, 0.7, 5.0])
ATTENTION = np.array([0, 0, 0, 1.0, 1.0, 0.4, 2.0])
ARCH = Arch(SPACE.max_widths, (("4d", "4d"), ("4d",), ("4d", "4d"), ("4d", "3d")))


def _cands(mode, arch=ARCH, min_depth=0, scores=SCORES, rng=None):
    return actions.candidates(mode, arch, SPACE, scores, ATTENTION, PATH_STAGE, min_depth, rng)


def test_all_mode_lists_every_removal_width_step_and_the_mb3d_conversion():
    got = _cands("all")
    assert [c.group for c in got] == ["depth@1", "depth@1", "depth@2", "depth@3", "depth@3", "depth@4", "depth@4",
                                      "mb3d@4", "width@1", "width@2", "width@3", "width@4"]
    removed = got[1].arch
    assert removed.choices == (("4d", "id"), ("4d",), ("4d", "4d"), ("4d", "3d")) and got[1].importance == 0.5
    mb3d = [c for c in got if c.kind == "mb3d"][0]
    assert mb3d.arch.choices[3] == ("4d", "4d") and mb3d.importance == 2.0  # p3D/p4D of the converted block (path 6)
    width = [c for c in got if c.group == "width@2"][0]
    assert width.arch.widths == (32, 16, 48, 64) and width.importance == 2.0  # stage 2's mean score


def test_paper_mode_takes_the_least_important_removal_and_stage():
    kinds = [(c.kind, c.desc) for c in _cands("paper")]
    assert [k for k, _ in kinds] == ["depth", "mb3d", "width"]
    assert "stage 1 block 1" in kinds[0][1]  # score 0.5
    # stage means: 1.75, 2.0, 2.5, 2.85 -> stage 1 narrows
    assert _cands("paper")[2].arch.widths == (16, 32, 48, 64)


def test_paper_mode_picks_among_the_actions_that_save_latency():
    # Stage 1 is the least important stage, but say the LUT predicts its narrowing no faster: the width
    # action must fall to the next least important stage (2), not vanish; likewise the removal (path 1).
    slower = {(16, 32, 48, 64)}
    saves = lambda arch: arch.widths not in slower and arch.choices[0] != ("4d", "id")  # noqa: E731
    got = actions.candidates("paper", ARCH, SPACE, SCORES, ATTENTION, PATH_STAGE, 0, saves=saves)
    assert [c.group for c in got] == ["depth@4", "mb3d@4", "width@2"]  # path 5 (0.7) is the next removal
    assert got[0].importance == 0.7 and got[2].arch.widths == (32, 16, 48, 64)


def test_stage_guard_and_width_floor():
    lone = Arch(SPACE.max_widths, (("4d", "id"), ("4d",), ("id", "4d"), ("4d", "3d")))
    depth = [c for c in _cands("all", lone, min_depth=1) if c.kind == "depth"]
    assert [c.group for c in depth] == ["depth@4", "depth@4"]  # only stage 4 has two blocks left
    assert [c.group for c in _cands("all", Arch(SPACE.min_widths, lone.choices), 1) if c.kind == "width"] == []


def test_random_mode_draws_one_legal_action_from_the_seed():
    draws = [_cands("random", rng=np.random.default_rng([0, step]))[0].group for step in range(12)]
    assert draws == [_cands("random", rng=np.random.default_rng([0, step]))[0].group for step in range(12)]
    assert len(set(draws)) >= 4  # not a constant choice


# ----------------------------------------------------------------------------- the decision rule
def _cand(loss_now, loss, correct_now, correct, saved, importance):
    return {"dloss": (loss - loss_now) / saved, "drop": 100.0 * (correct_now.astype(float) - correct) / saved,
            "importance": importance}


def test_choose_takes_a_clear_loss_winner():
    n = 2000
    rng = np.random.default_rng(0)
    loss_now, now = rng.uniform(0.1, 0.5, n), np.ones(n, bool)
    cands = [_cand(loss_now, loss_now + rng.normal(0.30, 0.05, n), now, now, 1.0, 0.1),
             _cand(loss_now, loss_now + rng.normal(0.02, 0.05, n), now, now, 1.0, 9.0)]
    assert choose(cands) == (1, [1], "loss")


def test_choose_breaks_loss_ties_by_accuracy_then_importance_never_by_order():
    n = 2000
    rng = np.random.default_rng(1)
    loss_now, now = rng.uniform(0.1, 0.5, n), np.ones(n, bool)
    noise = rng.normal(0, 0.5, n)
    a, b = now.copy(), now.copy()
    a[:300] = False  # a loses 300 images, b 10: same mean loss, clear accuracy difference
    b[:10] = False
    cands = [_cand(loss_now, loss_now + 0.1 + noise, now, a, 1.0, 0.1),
             _cand(loss_now, loss_now + 0.1 + noise[::-1], now, b, 1.0, 5.0)]
    won, tied, rule = choose(cands)
    assert (won, sorted(tied), rule) == (1, [0, 1], "accuracy")
    same = [_cand(loss_now, loss_now + 0.1, now, b, 1.0, 3.0), _cand(loss_now, loss_now + 0.1, now, b, 1.0, 0.5)]
    assert choose(same)[0::2] == (1, "importance")
    assert choose(same[::-1])[0::2] == (0, "importance")  # the same candidate wins in either order


def test_noise_rule_scales_with_the_number_of_images():
    """A mean loss difference of 0.02 (per-image SD 0.2) is signal on 10,000 images and noise on 100."""
    def pair(n):
        rng = np.random.default_rng(2)
        base, now = np.zeros(n), np.ones(n, bool)
        return [_cand(base, 0.10 + rng.normal(0, 0.2, n), now, now, 1.0, 1.0),
                _cand(base, 0.12 + rng.normal(0, 0.2, n), now, now, 1.0, 2.0)]
    assert choose(pair(10_000))[2] == "loss"
    assert choose(pair(100))[2] == "importance"


# ----------------------------------------------------------------------------- splits
def test_search_splits_are_disjoint_and_the_test_split_is_separate():
    from ef_keras.data import load_arrays

    splits = search_splits()
    train_x = load_arrays("embedded", "train")[0]
    parts = [load_arrays("embedded", splits[k])[0] for k in ("search_train", "search_val")]
    assert [len(p) for p in parts] == [16_000, 4_000]
    np.testing.assert_array_equal(np.concatenate(parts), train_x)  # a partition of the training images
    test_x = load_arrays("embedded", "validation")[0]
    assert len(test_x) == 5_000
    train_keys = {img.tobytes() for img in train_x[:, ::4, ::4, 0]}
    assert sum(img.tobytes() in train_keys for img in test_x[:, ::4, ::4, 0]) < 5  # different images (a few blanks)
    with pytest.raises(Exception, match="one slice of one split"):
        load_arrays("embedded", "train[:50%]+train[60%:]")


# ----------------------------------------------------------------------------- the search
def test_slim_stops_at_first_step_under_target_and_records_its_decisions(supernet_dir, lut, mid_target, tmp_path):
    result = slim(supernet_dir, str(tmp_path), target=mid_target, lut=lut, data="digits", actions="all",
                  confirm_top=2, **SMALL, **QUIET)
    state = json.loads((tmp_path / "trajectory.json").read_text())
    lat = [s["latency_ms"] for s in state["steps"]]
    assert lat[-1] <= mid_target < min(lat[:-1])  # stopped at the first step meeting the target
    assert all(b < a for a, b in zip(lat, lat[1:]))
    for step in state["steps"][1:]:
        assert step["decided_by"] in ("loss", "accuracy", "importance")
        groups = [c["group"] for c in step["candidates"]]
        assert len(groups) == len(set(groups)) <= 2  # the best of at most 2 groups confirmed
        assert {c["group"] for c in step["screened"] if c["confirmed"]} == set(groups)
        best_screened = min(step["screened"], key=lambda c: c["loss_per_ms"])
        assert best_screened["confirmed"]
        winner = [c for c in step["candidates"] if c["desc"] == step["desc"]]
        assert len(winner) == 1 and winner[0]["tied_with_winner"]
        if step["decided_by"] == "loss":  # every other confirmed candidate lost outside noise
            assert not any(c["tied_with_winner"] for c in step["candidates"] if c is not winner[0])
    counts = state["steps_decided_by"]
    assert sum(counts.values()) == len(state["steps"]) - 1
    assert all(d >= 1 for d in Arch.from_dict(state["steps"][-1]["arch"]).depths)  # the stage guard
    assert state["test"]["images"] == 360  # the digits' held-out split, read once at the end
    # the architecture JSON builds with ef_keras at deployment size and its latency is the last step's
    config = EfficientFormerConfig.load(result["files"]["architecture"])
    assert predict_ms(config, lut) == pytest.approx(lat[-1])
    assert EfficientFormer(config, input_shape=(224, 224, 3), classes=10).output.shape == (None, 10)
    # the saved model carries the inherited weights and the recalibrated statistics
    net, _ = load_supernet(supernet_dir)
    model = keras.saving.load_model(result["files"]["model"])
    calibration = load_split("digits", search_splits()["search_train"], 64, max_images=32)[0]
    final = child_model(net, Arch.from_dict(state["steps"][-1]["arch"]), calibration=calibration)
    x = np.random.default_rng(0).normal(size=(4, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(model(x).numpy(), final(x).numpy(), atol=1e-5)
    assert os.path.getsize(result["files"]["plot"]) > 10_000
    table = summary_table(state)
    assert table.count("\n| ") == len(state["steps"]) and "decided by the primary criterion" in table


def test_resume_gives_the_same_architecture(supernet_dir, lut, mid_target, tmp_path):
    first = slim(supernet_dir, str(tmp_path / "a"), target=mid_target, lut=lut, data="digits", **SMALL, **QUIET)
    path = tmp_path / "a" / "trajectory.json"
    state = json.loads(path.read_text())
    assert len(state["steps"]) >= 3
    state["steps"] = state["steps"][:2]  # as if killed right after step 1 was written
    state["done"] = False
    path.write_text(json.dumps(state))
    lines = []
    resumed = slim(supernet_dir, str(tmp_path / "a"), target=mid_target, lut=lut, data="digits", **SMALL,
                   log=lines.append)
    assert any("resuming" in line for line in lines)
    assert resumed["config"] == first["config"]
    with pytest.raises(SlimError, match=r"other settings \(target_ms="):  # another target needs another --out
        slim(supernet_dir, str(tmp_path / "a"), target=mid_target * 1.01, lut=lut, data="digits", **SMALL)


def test_ablation_flags(supernet_dir, lut, mid_target, tmp_path):
    uniform = slim(supernet_dir, str(tmp_path / "u"), target=mid_target, lut=lut, data="digits",
                   importance="uniform", **SMALL, **QUIET)
    state = json.loads(open(uniform["files"]["trajectory"]).read())
    assert state["path_scores"] == [1.0] * 7 and state["attention_scores"] == [0, 0, 0, 1.0, 1.0, 1.0, 1.0]
    rand = slim(supernet_dir, str(tmp_path / "r"), target=mid_target, lut=lut, data="digits", actions="random",
                **SMALL, **QUIET)
    steps = json.loads(open(rand["files"]["trajectory"]).read())["steps"][1:]
    assert {s["decided_by"] for s in steps} == {"random"} and all(len(s["candidates"]) == 1 for s in steps)


# ----------------------------------------------------------------------------- planted signal
def _planted_supernet(directory, planted: int, steps: int = 40):
    """A supernet whose only working block is MetaPath `planted`: every other block's layer scales are 0
    (an exact identity) and stay 0 while the rest trains, so removing any other block costs nothing and
    removing the planted one costs what it learned."""
    keras.utils.set_random_seed(1)
    net = Supernet(SPACE, image_size=64, classes=10)
    frozen = []
    for p, (b4, b3) in enumerate(zip(net.blocks_4d, net.blocks_3d)):
        for block in (b4, b3):
            if block is not None and p != planted:
                for ls in (block.ls1, block.ls2):
                    ls.layer_scale.assign(np.zeros(ls.layer_scale.shape, "float32"))
                    frozen.append(ls.layer_scale)
    train = [v for v in net.weight_variables() if not any(v is f for f in frozen)]
    opt = keras.optimizers.Adam(3e-3)
    widths, choices = net.encode(Arch(SPACE.max_widths, (("4d",) * 2, ("4d",), ("4d",) * 2, ("4d",) * 2)))

    @tf.function(autograph=False)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                y, net.forward(x, widths, choices, training=True)))
        opt.apply_gradients(zip(tape.gradient(loss, train), train))

    x, y = load_split("digits", search_splits()["search_train"], 64)
    for i in range(steps):
        idx = np.random.default_rng(i).choice(len(y), 64, replace=False)
        step(x[idx], y[idx])
    save_supernet(net, str(directory), extra={"training": {"data": "digits", "splits": search_splits()}})
    return str(directory)


def _kept(result, position):
    arch = Arch.from_dict(json.loads(open(result["files"]["trajectory"]).read())["steps"][-1]["arch"])
    stage, k = PATH_STAGE[position], position - PATH_STAGE.index(PATH_STAGE[position])
    return arch.choices[stage][k] != "id"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """{position: supernet directory} with the signal planted in stage 3, block 0 or block 1."""
    return {p: _planted_supernet(tmp_path_factory.mktemp(f"planted{p}"), p) for p in (3, 4)}


def test_planted_signal_decides_the_search_and_the_null_search_misses_it(planted, lut, tmp_path):
    """Data with one block planted to matter: the trained search keeps it wherever it is planted and
    removes the dead blocks; the random slimming (the null search) decides otherwise."""
    lo, hi, _ = reachable_range(SPACE, lut)
    target = hi - 0.35 * (hi - lo)  # a few removals are needed
    results = {}
    for position, directory in planted.items():
        results[position] = slim(directory, str(tmp_path / f"slim{position}"), target=target, lut=lut,
                                 data="digits", actions="all", confirm_top=3, **SMALL, **QUIET)
        assert _kept(results[position], position), f"the search removed the planted block {position}"
        steps = json.loads(open(results[position]["files"]["trajectory"]).read())["steps"][1:]
        # dead blocks go first (removed, or their attention turned off): zero loss per ms saved
        assert all(s["action"] in ("depth", "mb3d") and s["loss_per_ms"] == 0.0 for s in steps)
    assert _final(results[3]) != _final(results[4])  # the architecture follows the data
    null = slim(planted[3], str(tmp_path / "null"), target=target, lut=lut, data="digits", actions="random",
                **SMALL, **QUIET)
    null_steps = json.loads(open(null["files"]["trajectory"]).read())["steps"][1:]
    assert _final(null) != _final(results[3])
    assert not _kept(null, 3) or any(s["action"] == "width" for s in null_steps)  # it paid for signal somewhere


def _final(result):
    return json.loads(open(result["files"]["trajectory"]).read())["steps"][-1]["arch"]


# ----------------------------------------------------------------------------- bad input
def test_bad_targets(supernet_dir, lut, tmp_path):
    lo, hi, _ = reachable_range(SPACE, lut)
    for target, match in [(0, "positive"), (-1.0, "positive"), ("fast", "number"), (lo * 0.5, "below"),
                          (hi * 1.5, "above")]:
        with pytest.raises(SlimError, match=match):
            slim(supernet_dir, str(tmp_path), target=target, lut=lut, data="digits")
    assert lo < 3.0 < hi  # the synthetic LUT reaches 3.0 ms, but it is the paper's iPhone figure (L3)
    with pytest.raises(SlimError, match="iPhone 12 CoreML"):
        slim(supernet_dir, str(tmp_path), target=3.0, lut=lut, data="digits")
    with pytest.raises(SlimError, match="exactly one"):
        slim(supernet_dir, str(tmp_path), lut=lut, data="digits")
    assert not (tmp_path / "trajectory.json").exists()


def test_target_below_range_explains_the_paper_figure_and_the_way_there():
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


def test_bad_options_luts_supernets_and_split_sizes(supernet_dir, lut, mid_target, tmp_path):
    kw = dict(target=mid_target, lut=lut, data="digits")
    with pytest.raises(SlimError, match="--actions must be one of paper, all, random, got 'some'"):
        slim(supernet_dir, str(tmp_path), actions="some", **kw)
    with pytest.raises(SlimError, match="--importance must be one of alpha, uniform, got 'alfa'"):
        slim(supernet_dir, str(tmp_path), importance="alfa", **kw)
    with pytest.raises(SlimError, match="needs 5000 search-validation images .* digits has 287"):
        slim(supernet_dir, str(tmp_path), actions="all", screen_images=1000, confirm_images=4000, **kw)
    with pytest.raises(SlimError, match="confirm_images must be"):
        slim(supernet_dir, str(tmp_path), confirm_images=-5, **kw)
    with pytest.raises(SlimError, match="does not cover the supernet's width grid"):
        slim(supernet_dir, str(tmp_path), target=mid_target, lut=synthetic_lut((32, 32, 32, 64)), data="digits")
    with pytest.raises(SlimError, match="trained on --data digits, but slimming would score it on --data embedded"):
        slim(supernet_dir, str(tmp_path), target=mid_target, lut=lut, data="embedded")
    with pytest.raises(SlimError, match="holds no trained supernet"):
        slim(str(tmp_path / "none"), str(tmp_path), **kw)
    assert not (tmp_path / "trajectory.json").exists()


def test_nonfinite_supernet_is_refused(supernet_dir, lut, mid_target, tmp_path):
    import shutil

    broken = tmp_path / "nan_supernet"
    shutil.copytree(supernet_dir, broken)
    net, meta = load_supernet(str(broken))
    net.alpha.assign(np.full(net.alpha.shape, np.nan, "float32"))
    save_supernet(net, str(broken), extra={"training": meta["training"]})
    with pytest.raises(SlimError, match="non-finite values in .*alpha"):
        slim(str(broken), str(tmp_path / "out"), target=mid_target, lut=lut, data="digits")


def test_cli_prints_one_line_errors(tmp_path):
    lut_path = tmp_path / "lut.json"
    L.save_lut(synthetic_lut(), str(lut_path))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for args, expected in [
        (["--target", "-3"], "error: --target must be a positive number of milliseconds, got -3.0"),
        (["--target", "5", "--actions", "best"], "error: --actions must be one of paper, all, random, got 'best'"),
        (["--target", "5", "--importance", "x"], "error: --importance must be one of alpha, uniform, got 'x'"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "search.slim", *args, "--lut", str(lut_path), "--out",
                               str(tmp_path / "o")], capture_output=True, text=True, cwd=ROOT, env=env)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == expected
    assert not (tmp_path / "o").exists()
