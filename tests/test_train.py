"""Training: the recipe's pieces against references, learning on the embedded data, the ImageNet path
on tfds mock data, distillation, fine-tuning, kill -9 and resume, MirroredStrategy, CLI errors."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from ef_keras import EfficientFormer, data
from ef_keras.data import DatasetError
from ef_keras.training import loop as training, recipe
from tests.helpers import TINY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = recipe.EMBEDDED.replace(batch_size=32, image_size=64)


def _run_python(code, timeout=300, env=None):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _weights(path):
    return [w for w in keras.saving.load_model(path, compile=False).get_weights()]


# --------------------------------------------------------------------------- recipe pieces
def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_distillation_loss_matches_deit_formula_on_a_toy_teacher():
    rng = np.random.default_rng(0)
    teacher = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)])
    features = rng.normal(size=(8, 6)).astype("float32")
    teacher_logits = teacher(features).numpy()
    labels = np.eye(5, dtype="float32")[rng.integers(0, 5, 8)]
    labels = 0.7 * labels + 0.3 * labels[::-1]  # mixed targets, as after Mixup
    head, dist = rng.normal(size=(2, 8, 5)).astype("float32")
    alpha, smoothing = 0.5, 0.1
    got = training.distillation_loss(labels, head, dist, teacher_logits, alpha, smoothing).numpy()

    smooth = labels * (1 - smoothing) + smoothing / 5
    ce_head = -(smooth * _log_softmax(head)).sum(-1)
    ce_dist = -_log_softmax(dist)[np.arange(8), teacher_logits.argmax(-1)]
    np.testing.assert_allclose(got, (1 - alpha) * ce_head + alpha * ce_dist, rtol=1e-5)
    no_teacher = training.distillation_loss(labels, head, dist, None, alpha, smoothing).numpy()
    np.testing.assert_allclose(no_teacher, ce_head, rtol=1e-5)


def test_adaptive_gradient_clipping_matches_timm():
    from tools.timm_reference import import_timm

    try:
        import_timm()
        import torch
        from timm.utils.agc import adaptive_clip_grad
    except ImportError as e:
        pytest.skip(f"timm reference unavailable: {e}")
    rng = np.random.default_rng(1)
    shapes = {"conv/kernel": ((3, 3, 4, 6), (3, 2, 0, 1)), "dense/kernel": ((6, 5), (1, 0)),
              "norm/gamma": ((5,), (0,)), "attn/attention_biases": ((8, 49), (0, 1))}
    variables, grads, torch_params = [], [], []
    for name, (shape, to_torch) in shapes.items():
        value = rng.normal(size=shape).astype("float32") * 0.1
        grad = (rng.normal(size=shape) * np.resize([1e-5, 1.0], shape[-1:])).astype("float32")
        var = keras.Variable(value, name=name.split("/")[1])
        var._path = name  # as inside a model: AGC looks at the path for attention biases
        variables.append(var)
        grads.append(tf.constant(grad))
        p = torch.nn.Parameter(torch.tensor(value.transpose(to_torch)))
        p.grad = torch.tensor(grad.transpose(to_torch))
        torch_params.append((p, to_torch))
    clipped = training.adaptive_clip_gradients(grads, variables, clip=0.01)
    adaptive_clip_grad([p for p, _ in torch_params], clip_factor=0.01, eps=1e-3)
    for ours, (p, to_torch) in zip(clipped, torch_params):
        np.testing.assert_allclose(ours.numpy().transpose(to_torch), p.grad.numpy(), rtol=1e-5, atol=1e-9)
    changed = [not np.allclose(c.numpy(), g.numpy(), rtol=1e-3, atol=0) for c, g in zip(clipped, grads)]
    assert all(changed)  # every tensor had units above the threshold


def test_schedule_optimizer_and_weight_decay_exclusions():
    r = recipe.PAPER.replace(batch_size=2048, epochs=10, warmup_epochs=2)
    schedule = training.learning_rate_schedule(r, steps_per_epoch=100)
    assert r.peak_lr == pytest.approx(2e-3)
    assert float(schedule(0)) == pytest.approx(1e-5)
    assert float(schedule(100)) == pytest.approx((1e-5 + 2e-3) / 2, rel=1e-3)
    assert float(schedule(200)) == pytest.approx(2e-3)
    assert float(schedule(1000)) == pytest.approx(1e-5, rel=1e-3)
    model = EfficientFormer(TINY, input_shape=(64, 64, 3), classes=10)
    optimizer = training.make_optimizer(r, 100)
    optimizer.build(model.trainable_variables)
    decayed = {v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)}
    assert decayed and all(v.name == "kernel" for v in model.trainable_variables if v.path in decayed)
    excluded = {v.name for v in model.trainable_variables if v.path not in decayed}
    assert {"gamma", "beta", "bias", "layer_scale", "attention_biases"} <= excluded


# --------------------------------------------------------------------------- training runs
def _evaluate_here(result, dataset, r, eval_steps=None, data_dir=None):
    """Eval loss, top-1 and top-5 of the run's saved model, computed here with NumPy (not the loop's metrics).

    Same eval split and preprocessing as the run (`ef_keras.data`); a label counts as in the top k when
    fewer than k classes score above it (TensorFlow's `in_top_k` tie rule).
    """
    model = keras.saving.load_model(result["model_path"], compile=False)
    ds = data.make_dataset(dataset, data_dir=data_dir, image_size=r.image_size, batch_size=r.batch_size,
                           training=False, num_classes=result["num_classes"], crop_pct=r.crop_pct)
    logits, labels = [], []
    for images, one_hot in (ds.take(eval_steps) if eval_steps else ds):
        logits.append(np.asarray(model(images, training=False), np.float64))
        labels.append(np.argmax(one_hot, axis=-1))
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    own = logits[np.arange(len(labels)), labels]
    above = (logits > own[:, None]).sum(axis=1)
    loss = np.mean(np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1) - own)
    return {"eval_loss": loss, "eval_top1": np.mean(above < 1), "eval_top5": np.mean(above < 5)}


def test_short_training_on_embedded_data_learns(tmp_path):
    r = recipe.EMBEDDED.replace(epochs=2)
    result = training.train(TINY, "digits", out_dir=str(tmp_path), recipe=r, verbose=0)
    assert result["eval_top1"] > 0.5, result  # chance is 0.1
    here = _evaluate_here(result, "digits", r)
    assert here["eval_top5"] > here["eval_top1"]  # the digits' top-5 is informative (not 0 or 1 like the top-1)
    assert {k: result[k] for k in here} == pytest.approx(here, rel=1e-4)
    assert result["steps"] == 2 * (1437 // 64)
    rows = open(tmp_path / "history.csv").read().splitlines()
    assert rows[0].startswith("epoch,step,lr,train_loss") and len(rows) == 3
    assert os.listdir(tmp_path / "tensorboard")
    reloaded = keras.saving.load_model(result["model_path"], compile=False)
    assert reloaded.output_shape == (None, 10)


def test_imagenet_path_on_tfds_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=16):
        # a learning rate without warm-up that moves the weights, so the saved EMA weights differ from the raw ones
        r = recipe.PAPER.replace(epochs=1, batch_size=8, image_size=64, ema_decay=0.99, warmup_epochs=0, base_lr=1.0)
        result = training.train(TINY, "imagenet2012", data_dir=str(tmp_path / "tfds"), out_dir=str(tmp_path / "run"),
                                recipe=r, steps_per_epoch=2, eval_steps=1, verbose=0)
        here = _evaluate_here(result, "imagenet2012", r, eval_steps=1, data_dir=str(tmp_path / "tfds"))
    assert result["num_classes"] == 1000 and result["steps"] == 2
    assert {k: result[k] for k in here} == pytest.approx(here, rel=1e-4)  # the EMA weights it saved, evaluated


def test_distillation_and_fine_tuning(tmp_path):
    teacher = EfficientFormer(TINY, input_shape=(64, 64, 3), classes=10, distillation=False, name="teacher")
    teacher_path = str(tmp_path / "teacher.keras")
    teacher.save(teacher_path)
    first = training.train(TINY, "digits", out_dir=str(tmp_path / "distilled"), teacher=teacher_path,
                           recipe=QUICK.replace(epochs=1), steps_per_epoch=3, verbose=0)
    assert first["steps"] == 3

    wrong = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(7)])
    with pytest.raises(training.TrainError, match="teacher predicts 7 classes"):
        training.train(TINY, "digits", out_dir=str(tmp_path / "bad"), teacher=wrong, recipe=QUICK, verbose=0)

    messages = []
    tuned = training.build_model(TINY, num_classes=4, image_size=64, init_checkpoint=first["model_path"],
                                 log=messages.append)
    assert "heads re-initialised" in messages[0] and "10 classes" in messages[0]
    source = keras.saving.load_model(first["model_path"], compile=False)
    for name in ("stem", "stage3_block2", "norm"):
        for a, b in zip(source.get_layer(name).get_weights(), tuned.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert tuned.get_layer("head").kernel.shape == (64, 4)
    same = training.build_model(TINY, num_classes=10, image_size=64, init_checkpoint=first["model_path"],
                                log=messages.append)
    np.testing.assert_array_equal(same.get_layer("head").get_weights()[0], source.get_layer("head").get_weights()[0])


_KILL_DRIVER = """
import os, signal, sys
from ef_keras.training import loop as training, recipe
from tests.helpers import TINY
out, kill_at = sys.argv[1], int(sys.argv[2])
r = recipe.EMBEDDED.replace(epochs=2, batch_size=32, image_size=64, augment="recipe", drop_path_rate=0.1,
                            ema_decay=0.9)
def on_step(step, loss):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
training.train(TINY, "digits", out_dir=out, recipe=r, steps_per_epoch=4, eval_steps=2, checkpoint_every=3, verbose=0,
               on_step=on_step)
"""


def test_kill_9_and_resume_matches_an_uninterrupted_run(tmp_path):
    def run(out, kill_at):
        code = _KILL_DRIVER.replace("sys.argv[1], int(sys.argv[2])", f"{str(out)!r}, {kill_at}")
        return _run_python(code)

    whole = run(tmp_path / "whole", -1)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = run(tmp_path / "killed", 5)  # after the step-3 checkpoint, inside epoch 2 (steps 5-8)
    assert killed.returncode == -9
    assert not os.path.exists(tmp_path / "killed" / "model.keras")
    resumed = run(tmp_path / "killed", -1)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for a, b in zip(_weights(tmp_path / "whole" / "model.keras"), _weights(tmp_path / "killed" / "model.keras")):
        np.testing.assert_array_equal(a, b)
    assert (open(tmp_path / "whole" / "history.csv").read().split("seconds")[1].count("\n")
            == open(tmp_path / "killed" / "history.csv").read().split("seconds")[1].count("\n"))
    whole_rows = [r.split(",")[:7] for r in open(tmp_path / "whole" / "history.csv").read().splitlines()]
    killed_rows = [r.split(",")[:7] for r in open(tmp_path / "killed" / "history.csv").read().splitlines()]
    assert whole_rows == killed_rows

    # A corrupt newest checkpoint: one-line error, and nothing in the run directory changes.
    ckpt_dir = tmp_path / "killed" / "checkpoints"
    newest = tf.train.latest_checkpoint(str(ckpt_dir))
    data_file = [f for f in os.listdir(ckpt_dir) if f.startswith(os.path.basename(newest) + ".data")][0]
    with open(ckpt_dir / data_file, "r+b") as f:
        f.truncate(100)
    before = {f: os.path.getmtime(ckpt_dir / f) for f in os.listdir(ckpt_dir)}
    r = recipe.EMBEDDED.replace(epochs=3, batch_size=32, image_size=64, augment="recipe", drop_path_rate=0.1,
                                ema_decay=0.9)
    with pytest.raises(training.TrainError, match="settings"):  # a changed recipe is refused before loading
        training.train(TINY, "digits", out_dir=str(tmp_path / "killed"), recipe=r, steps_per_epoch=4, verbose=0)
    with pytest.raises(training.TrainError, match="cannot resume from checkpoint"):
        training.train(TINY, "digits", out_dir=str(tmp_path / "killed"), recipe=r.replace(epochs=2), eval_steps=2,
                       steps_per_epoch=4, checkpoint_every=3, verbose=0)
    assert {f: os.path.getmtime(ckpt_dir / f) for f in os.listdir(ckpt_dir)} == before


_MIRRORED_DRIVER = """
import json, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from ef_keras.training import loop as training, recipe
from tests.helpers import TINY
r = recipe.EMBEDDED.replace(epochs=1, batch_size=16, image_size=64, augment="none", agc_clip=0.01)
out = {}
mirrored = training.make_strategy("mirrored")
out["replicas"] = mirrored.num_replicas_in_sync
m = training.train(TINY, "digits", out_dir="OUT/m", recipe=r, strategy=mirrored, steps_per_epoch=3,
                   eval_steps=2, verbose=0)
s = training.train(TINY, "digits", out_dir="OUT/s", recipe=r, strategy="one_device", steps_per_epoch=3,
                   eval_steps=2, verbose=0)
wm = keras.saving.load_model("OUT/m/model.keras").get_weights()
ws = keras.saving.load_model("OUT/s/model.keras").get_weights()
out["max_weight_diff"] = max(float(np.abs(a - b).max()) for a, b in zip(wm, ws))
out["losses"] = [m["train_loss"], s["train_loss"]]
try:
    training.train(TINY, "digits", out_dir="OUT/odd", recipe=r.replace(batch_size=15), strategy=mirrored,
                   verbose=0)
except training.TrainError as e:
    out["odd_batch_error"] = str(e)
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow  # ~80 s on 2 shared cores: two runs, one traced for two replicas
def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(tmp_path):
    proc = _run_python(_MIRRORED_DRIVER.replace("OUT", str(tmp_path)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT")[1])
    assert out["replicas"] == 2
    # 2 replicas x 8 with SyncBN and summed gradients == one device x 16, up to float rounding
    # (Adam's normalisation amplifies rounding on near-zero gradients, hence not 1e-6).
    assert out["max_weight_diff"] < 2e-3, out
    assert out["losses"][0] == pytest.approx(out["losses"][1], rel=1e-4)
    assert "not divisible by the 2 replicas" in out["odd_batch_error"]


def test_cli_trains_and_reports_bad_input_in_one_line(tmp_path):
    arch = tmp_path / "tiny.json"
    TINY.save(str(arch))
    ok = subprocess.run([sys.executable, "-m", "ef_keras.train", "--model", str(arch), "--data", "digits",
                         "--epochs", "1", "--steps-per-epoch", "2", "--eval-steps", "1", "--batch-size", "16",
                         "--image-size", "64", "--verbose", "2", "--out", str(tmp_path / "run")],
                        cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "done: eval top-1" in ok.stdout
    assert json.load(open(tmp_path / "run" / "results.json"))["steps"] == 2
    bad = subprocess.run([sys.executable, "-m", "ef_keras.train", "--data", "no_such_set", "--out",
                          str(tmp_path / "bad")], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unknown dataset 'no_such_set'" in errors[0]
    assert "Traceback" not in bad.stderr
    with pytest.raises(DatasetError, match="downloads/manual"):
        training.train(TINY, "imagenet2012", data_dir=str(tmp_path / "empty"), out_dir=str(tmp_path / "in"))


@pytest.mark.slow  # ~20 s: two more traced runs
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_runs(tmp_path, policy):
    result = training.train(TINY, "digits", out_dir=str(tmp_path), recipe=recipe.EMBEDDED.replace(epochs=1),
                            mixed_precision=policy, steps_per_epoch=4, eval_steps=1, verbose=0)
    assert np.isfinite(result["train_loss"]) and keras.config.dtype_policy().name == "float32"
