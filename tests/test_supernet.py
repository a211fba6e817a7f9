"""Supernet: Gumbel-softmax mixing, sandwich/uniform children, save/load and format, training resume."""

import json
import os

import numpy as np
import pytest

from ef_keras.models.efficientformer.config import EfficientFormerConfig
from search.arch import Arch, ArchError, full_arch, smallest_arch
from search.space import SearchSpace, SpaceError, default_space
from search.supernet import (Supernet, SupernetError, child_model, gumbel_noise, load_supernet, save_supernet,
                             tau_at)
from search.train_supernet import SupernetTrainer, train_supernet

SPACE = SearchSpace(EfficientFormerConfig(widths=(32, 32, 48, 64), depths=(1, 1, 2, 2), num_vit=0,
                                          name="tiny_supernet"), min_widths=(16, 16, 32, 48))
TINY = SearchSpace(EfficientFormerConfig(widths=(16, 16, 32, 32), depths=(1, 1, 1, 1), num_vit=0),
                   min_widths=(16, 16, 16, 16))


@pytest.fixture(scope="module")
def supernet():
    net = Supernet(SPACE, image_size=64, classes=5)
    rng = np.random.default_rng(1)
    for v in net.weights:  # non-trivial layer scales and BN statistics, so every block matters
        if "layer_scale" in v.path:
            v.assign(rng.uniform(0.2, 0.5, v.shape).astype("float32"))
        elif "moving_variance" in v.path:
            v.assign(rng.uniform(0.5, 2.0, v.shape).astype("float32"))
    return net


def test_tau_schedule_anneals_exponentially_from_5_to_half():
    assert tau_at(0, 100) == pytest.approx(5.0)
    assert tau_at(100, 100) == pytest.approx(0.5)
    assert tau_at(50, 100) == pytest.approx(np.sqrt(5.0 * 0.5))
    assert tau_at(500, 100) == pytest.approx(0.5)


def test_gumbel_noise_is_a_function_of_seed_and_step():
    a, b, c = gumbel_noise(3, 7, 5), gumbel_noise(3, 7, 5), gumbel_noise(3, 8, 5)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    big = gumbel_noise(0, 0, 20000).numpy().ravel()  # standard Gumbel: mean = Euler-Mascheroni constant
    assert big.mean() == pytest.approx(0.5772, abs=0.03)


def test_mixing_weights_mask_3d_in_stages_1_and_2(supernet):
    w = supernet.mixing_weights(gumbel_noise(0, 1, supernet.num_paths)).numpy()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-6)
    stages = np.array(supernet.path_stage)
    assert np.all(w[stages < 2, 1] == 0.0)
    assert np.all(w[stages >= 2, 1] > 0.0)


def test_soft_mixture_differs_from_every_single_candidate(supernet):
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    supernet.alpha.assign(np.zeros((supernet.num_paths, 3), "float32"))
    widths = np.array(SPACE.max_widths, "int32")
    mixed = supernet.forward(x, widths, None, soft_weights=supernet.mixing_weights()).numpy()
    for choice in (0, 2):
        single = supernet.forward(x, widths, np.full(supernet.num_paths, choice, "int32")).numpy()
        assert not np.allclose(mixed, single, atol=1e-4)


@pytest.mark.parametrize("choices", [
    (("4d",), ("4d",), ("4d", "4d"), ("4d", "4d")),
    (("id",), ("4d",), ("4d", "id"), ("4d", "3d")),
    (("4d",), ("id",), ("id", "id"), ("3d", "3d")),
])
def test_one_hot_soft_weights_equal_the_chosen_child(supernet, choices):
    """Soft mixing with one-hot weights is the child those weights pick (the paper's equation at τ -> 0)."""
    arch = Arch(SPACE.max_widths, choices)
    widths, picked = supernet.encode(arch)
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    one_hot = np.eye(3, dtype="float32")[picked]
    np.testing.assert_allclose(supernet.forward(x, widths, None, soft_weights=one_hot).numpy(),
                               child_model(supernet, arch)(x).numpy(), atol=1e-5)


def test_width_reduction_slices_leading_channels(supernet):
    arch = Arch((16, 32, 32, 48), (("4d",), ("4d",), ("4d", "id"), ("4d", "3d")))
    child = child_model(supernet, arch)
    src = supernet.blocks_4d[0].fc1.kernel.numpy()
    np.testing.assert_array_equal(child.get_layer("stage0_block0").fc1.kernel.numpy(), src[:, :, :16, :64])
    qkv = supernet.blocks_3d[5].token_mixer.qkv.kernel.numpy()
    np.testing.assert_array_equal(child.get_layer("stage3_block2").token_mixer.qkv.kernel.numpy(), qkv[:48])
    head = supernet.head.kernel.numpy()
    np.testing.assert_array_equal(child.get_layer("head_dist").kernel.numpy(), head[:48])
    out = child(np.zeros((1, 64, 64, 3), "float32"))
    assert out.shape == (1, 5)


def test_batchnorm_recalibration_uses_the_calibration_batch_statistics(supernet):
    arch = Arch((16, 32, 32, 48), (("4d",), ("id",), ("4d", "4d"), ("4d", "3d")))
    x = np.random.default_rng(2).normal(size=(8, 64, 64, 3)).astype("float32")
    stale = child_model(supernet, arch)
    child = child_model(supernet, arch, calibration=x)
    assert not np.allclose(stale(x, training=False).numpy(), child(x, training=True).numpy(), atol=1e-3)
    np.testing.assert_allclose(child(x, training=False).numpy(), child(x, training=True).numpy(), atol=1e-4)
    assert child.get_layer("stem").norm1.momentum == 0.9  # restored


def test_arch_rules():
    full_arch(SPACE, 2).validate(SPACE)
    smallest_arch(SPACE).validate(SPACE)
    assert smallest_arch(SPACE, 1).widths == (16, 16, 32, 48)
    with pytest.raises(ArchError, match="3D blocks only close stage 4"):
        Arch(SPACE.max_widths, (("4d",), ("4d",), ("3d", "4d"), ("4d", "4d"))).validate(SPACE)
    with pytest.raises(ArchError, match="must follow every 4D"):
        Arch(SPACE.max_widths, (("4d",), ("4d",), ("4d", "4d"), ("3d", "4d"))).validate(SPACE)
    with pytest.raises(ArchError, match="stage 4 width 56 is not on the search space's grid 48..64"):
        Arch((32, 32, 48, 56), (("4d",), ("4d",), ("4d", "4d"), ("4d", "4d"))).validate(SPACE)
    with pytest.raises(ArchError, match="stage 1 width 0 is not on"):
        Arch((0, 32, 48, 64), (("4d",), ("4d",), ("4d", "4d"), ("4d", "4d"))).validate(SPACE)
    with pytest.raises(ArchError, match="2 MetaPath choices, the supernet has 1"):
        Arch(SPACE.max_widths, (("4d", "4d"), ("4d",), ("4d", "4d"), ("4d", "4d"))).validate(SPACE)


def test_space_grid_and_bad_spaces():
    assert SPACE.widths(3) == (48, 64) and SPACE.widths(0) == (16, 32)
    space = default_space()
    assert space.max_widths == (64, 128, 256, 512) and space.min_widths == (32, 64, 128, 256)
    assert SearchSpace.from_dict(space.to_dict()) == space
    with pytest.raises(SpaceError, match="stage 2: widths 48..32"):
        SearchSpace(SPACE.config, min_widths=(16, 48, 32, 48))
    with pytest.raises(SpaceError, match="multiples of 16"):
        SearchSpace(SPACE.config, min_widths=(8, 16, 32, 48))
    small = default_space(max_widths=(32, 64, 96, 128), min_widths=(16, 32, 64, 96), depths=(1, 1, 2, 2))
    assert small.widths(3) == (96, 112, 128) and small.depths == (1, 1, 2, 2)
    with pytest.raises(SpaceError, match="at least one block"):
        default_space(depths=(4, 0, 6, 4))


def test_save_load_round_trip_and_mismatch(supernet, tmp_path):
    save_supernet(supernet, str(tmp_path))
    loaded, meta = load_supernet(str(tmp_path))
    assert meta["image_size"] == 64 and loaded.num_paths == supernet.num_paths and loaded.space == SPACE
    for a, b in zip(supernet.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    meta_path = tmp_path / "supernet.json"
    meta = json.loads(meta_path.read_text())
    meta["space"]["config"]["depths"] = [1, 1, 3, 2]  # checkpoint no longer matches its description
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(SupernetError, match="does not match"):
        load_supernet(str(tmp_path))
    with pytest.raises(SupernetError, match="holds no trained supernet"):
        load_supernet(str(tmp_path / "nowhere"))


def test_old_single_width_supernet_is_refused_and_kept(supernet, tmp_path):
    """A 0.2 supernet directory (no format, a `config` instead of a `space`) gets one line; nothing is removed."""
    save_supernet(supernet, str(tmp_path))
    meta_path = tmp_path / "supernet.json"
    meta = json.loads(meta_path.read_text())
    old = {"config": meta["space"]["config"], "image_size": 64, "classes": 5}
    meta_path.write_text(json.dumps(old))
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(SupernetError, match="older format .* train a new one with .*--out NEW_DIR"):
        load_supernet(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == before and json.loads(meta_path.read_text()) == old


def test_image_size_must_leave_a_2x2_last_stage():
    with pytest.raises(SupernetError, match=">= 64"):
        Supernet(SPACE, image_size=32)


def test_sandwich_children_are_largest_smallest_and_two_random():
    trainer = _trainer("sandwich")
    roles = trainer.children(5)
    assert [r for r, _, _ in roles] == ["largest", "smallest", "random", "random"]
    np.testing.assert_array_equal(roles[0][1], TINY.max_widths)
    np.testing.assert_array_equal(roles[1][1], TINY.min_widths)
    assert np.all(roles[0][2][:, 2] < -1e8)  # the largest child keeps every block
    first = np.isin(np.arange(trainer.supernet.num_paths), [0, 1, 2, 3])  # one path per stage here
    assert np.all(roles[1][2][first, 0] == 0.0) and np.all(roles[1][2][first, 2] < -1e8)
    again = _trainer("sandwich").children(5)
    for (_, a, _), (_, b, _) in zip(roles, again):  # children are a pure function of (seed, step)
        np.testing.assert_array_equal(a, b)
    assert [r for r, _, _ in _trainer("uniform").children(5)] == ["random"]


def _trainer(rule):
    from ef_keras.training.loop import make_strategy

    return SupernetTrainer(TINY, image_size=64, classes=10, mixing="hard", rule=rule, total_steps=10,
                           steps_per_epoch=5, batch_size=8, lr=1e-3, weight_decay=0.0, alpha_lr=1e-3,
                           alpha_weight_decay=0.0, seed=3, strategy=make_strategy("one_device"))


def test_alpha_of_a_stages_last_metapath_gets_a_gradient():
    """Every TINY MetaPath is its stage's last, read only by a scale-invariant norm (downsampling BN, head LN).

    α's gradient through the soft mixture (what the trainer uses) is non-zero there; the
    straight-through estimator of hard sampling (the chosen candidate alone, weight 1 + w - sg(w)),
    which α used before, is 0 up to rounding: with it these α never moved from uniform.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    trainer = _trainer("uniform")
    net, rng = trainer.supernet, np.random.default_rng(0)
    for v in net.weights:  # layer scales of a trained network, so every block's output matters
        if "layer_scale" in v.path:
            v.assign(rng.uniform(0.2, 0.5, v.shape).astype("float32"))
    x = rng.uniform(-1, 1, (8, 64, 64, 3)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 8)]
    widths, noise = np.asarray(TINY.max_widths, "int32"), gumbel_noise(0, 1, net.num_paths)
    _, soft = trainer._alpha_grad(x, y, widths, noise)
    with tf.GradientTape() as tape:
        w = net.mixing_weights(noise)
        straight_through = tf.one_hot(tf.argmax(w, -1), 3) * (1.0 + w - tf.stop_gradient(w))
        loss = trainer._loss(net.forward(x, widths, None, soft_weights=straight_through, training=True), y)
    hard = np.abs(tape.gradient(loss, net.alpha).numpy()).max(axis=1)
    soft = np.abs(soft.numpy()).max(axis=1)
    assert np.all(soft > 1e3 * hard), (soft, hard)


@pytest.mark.parametrize("rule", ["uniform", "sandwich"])
def test_training_resumes_after_kill_with_the_same_result(tmp_path, rule):
    """A run stopped after step 7 (last checkpoint at 6) and resumed ends where an uninterrupted run ends."""
    kw = dict(space=TINY, data="digits", image_size=64, epochs=2, warmup_epochs=1, batch_size=128,
              checkpoint_every=3, mixing="hard", rule=rule, log=lambda m: None)
    whole, _ = train_supernet(str(tmp_path / "a"), **kw)
    part, _ = train_supernet(str(tmp_path / "b"), max_steps=7, **kw)
    assert not os.path.exists(tmp_path / "b" / "supernet.json")
    resumed, importance = train_supernet(str(tmp_path / "b"), **kw)
    for a, b in zip(whole.weights, resumed.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
    assert np.abs(whole.alpha.numpy()).max() > 0  # alpha was trained
    assert len(importance["paths"]) == 4 and len(importance["stage_scores"]) == 4
    assert (tmp_path / "b" / "supernet.weights.h5").exists() and (tmp_path / "b" / "tb").is_dir()
    with pytest.raises(SupernetError, match="batch_size=128 there, 64 now"):
        train_supernet(str(tmp_path / "b"), **{**kw, "batch_size": 64})
    other = "sandwich" if rule == "uniform" else "uniform"
    with pytest.raises(SupernetError, match=f"rule='{rule}' there, '{other}' now"):
        train_supernet(str(tmp_path / "b"), **{**kw, "rule": other})


_MIRRORED_SUPERNET = """
import json, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from ef_keras.models.efficientformer.config import EfficientFormerConfig
from ef_keras.training.loop import make_strategy
from search.space import SearchSpace
from search.train_supernet import train_supernet
from tests.helpers import SUPERNET_DEPTHS, SUPERNET_MIN_WIDTHS, SUPERNET_WIDTHS, supernet_children_logits
cfg = EfficientFormerConfig(widths=SUPERNET_WIDTHS, depths=SUPERNET_DEPTHS, num_vit=0)
kw = dict(space=SearchSpace(cfg, SUPERNET_MIN_WIDTHS), data="digits", image_size=64, epochs=2, warmup_epochs=1,
          steps_per_epoch=2, batch_size=16, mixing="MODE", rule="RULE", augment="none", log=lambda m: None)
mirrored = make_strategy("mirrored")
m, _ = train_supernet("OUT/m", strategy=mirrored, **kw)
s, _ = train_supernet("OUT/s", strategy="one_device", **kw)
print("RESULT" + json.dumps({"replicas": mirrored.num_replicas_in_sync,
      "alpha_moved": float(np.abs(s.alpha.numpy()).max()),
      "max_diff": max(float(np.abs(a - b).max())
                      for a, b in zip(supernet_children_logits(m), supernet_children_logits(s)))}))
"""


@pytest.mark.slow  # ~2 min a mode on 2 shared cores: four traced runs in a subprocess
@pytest.mark.parametrize("mode,rule", [("soft", "uniform"), ("hard", "sandwich")])
def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(tmp_path, mode, rule):
    """2 replicas x 8 images (SyncBN, summed losses) train the supernet as one device x 16 does (children's logits)."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = _MIRRORED_SUPERNET.replace("OUT", str(tmp_path)).replace("MODE", mode).replace("RULE", rule)
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=400,
                          env={**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT")[1])
    assert out["replicas"] == 2 and out["alpha_moved"] > 0
    assert out["max_diff"] < 1e-4, out
