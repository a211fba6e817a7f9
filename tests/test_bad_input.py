"""Bad input is never destructive and never silently wrong (issue 14).

For every bad input of every CLI: a non-zero exit, exactly one `error: ...` line on stderr
and no traceback, and the case's directory afterwards exactly as before (nothing
pre-existing changed, no partial or temp file, no empty run directory). The CLIs run for
real; to import TensorFlow once per CLI instead of once per case, the cases of one CLI go
through `tests/cli_driver.py` in one subprocess (the CLIs' own flag parsing and `main`).
The Python constructors and helpers are checked in-process.
"""

import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import TINY, TINY_INPUT
from safetensors.numpy import save_file

import ef_keras
from android_ios_bench.android import AndroidSettings
from ef_keras import output
from ef_keras.errors import EfKerasError
from ef_keras.training.recipe import EMBEDDED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(ROOT, "tests", "cli_driver.py")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
#: TensorFlow's C++ start-up log lines (not ours; TF_CPP_MIN_LOG_LEVEL does not silence them all).
TF_LOG = re.compile(r"^(WARNING: All log messages before absl::InitializeLog"
                    r"|[IWEF]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] )")
TINY_ARCH = TINY.to_dict()


# --------------------------------------------------------------------------- case set-ups
def _write(path, data):
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode) as f:
        f.write(data)


def arch(d, **changes):
    _write(os.path.join(d, "tiny.json"), json.dumps({**TINY_ARCH, **changes}))


def with_files(*files, **changes):
    """A set-up writing tiny.json (with `changes`) plus (name, content or None for a directory) pairs."""
    def setup(d):
        arch(d, **changes)
        for name, content in files:
            if content is None:
                os.makedirs(os.path.join(d, name))
                _write(os.path.join(d, name, "keep.txt"), "precious")
            else:
                _write(os.path.join(d, name), content)
    return setup


def keras_file(name="m.keras", cut=None):
    """A set-up writing tiny.json and the tiny model saved as `name` (its first `cut` fraction of bytes if given)."""
    def setup(d):
        arch(d)
        path = os.path.join(d, name)
        ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=10).save(path)
        if cut is not None:
            with open(path, "rb") as f:
                data = f.read()
            _write(path, data[:int(len(data) * cut)])
    return setup


V2_LUT = os.path.join(ROOT, "android_ios_bench", "luts", "host_x86_2core_fp32_v2.json")
CONVERT = "deploy.convert"
TRAIN = "ef_keras.train"
DESCRIBE = "ef_keras.describe"
LUT = "android_ios_bench.host"  # defines its flags in main(): one subprocess per case
SLIM, SUPERNET = "search.slim", "search.train_supernet"  # define their flags when run as __main__: the same
SUBPROCESS_CLIS = (LUT, SLIM, SUPERNET)
TINY64 = ["--model", "tiny.json", "--image-size", "64"]
#: (cli, id, set-up, argv, expected part of the error line)
CASES = [
    (CONVERT, "onnx_named_tflite", with_files(), ["--to", "onnx", *TINY64, "--out", "m.tflite"], "end in .onnx"),
    (CONVERT, "overwrite_a_directory", with_files(("d.tflite", None)),
     ["--to", "tflite", *TINY64, "--out", "d.tflite", "--overwrite"], "directory this tool did not write"),
    (CONVERT, "overwrite_a_foreign_mlpackage", with_files(("x.mlpackage", None)),
     ["--to", "coreml", *TINY64, "--out", "x.mlpackage", "--overwrite"], "directory this tool did not write"),
    (CONVERT, "existing_output", with_files(("m.tflite", b"old model")),
     ["--to", "tflite", *TINY64, "--out", "m.tflite"], "pass --overwrite"),
    (CONVERT, "missing_out_directory", with_files(), ["--to", "tflite", *TINY64, "--out", "no/m.tflite"],
     "does not exist"),
    (CONVERT, "image_size_zero", with_files(), ["--to", "tflite", "--model", "tiny.json", "--image-size", "0"],
     "--image-size must be an integer >= 32"),
    (CONVERT, "image_size_not_multiple", with_files(),
     ["--to", "tflite", "--model", "tiny.json", "--image-size", "48"], "multiples of 32"),
    (CONVERT, "image_size_not_a_number", with_files(),
     ["--to", "tflite", "--model", "tiny.json", "--image-size", "abc"], "--image-size"),
    (CONVERT, "arch_not_utf8", lambda d: _write(os.path.join(d, "tiny.json"), b"\xff\xfe{not json"),
     ["--to", "tflite", *TINY64], "tiny.json is not UTF-8"),
    (CONVERT, "arch_bad_json", lambda d: _write(os.path.join(d, "tiny.json"), '{"widths": [16,'),
     ["--to", "tflite", *TINY64], "not valid JSON"),
    (CONVERT, "arch_string_width", with_files(widths=[16, "32", 48, 64]), ["--to", "tflite", *TINY64],
     "widths must be a list of 4 integers"),
    (CONVERT, "arch_bool_depth", with_files(depths=[1, True, 1, 2]), ["--to", "tflite", *TINY64],
     "depths must be a list of 4 integers"),
    (CONVERT, "arch_nan_layer_scale", with_files(layer_scale_init=math.nan), ["--to", "tflite", *TINY64],
     "layer_scale_init must be a finite number > 0"),
    (CONVERT, "arch_inf_layer_scale", with_files(layer_scale_init=math.inf), ["--to", "tflite", *TINY64],
     "layer_scale_init must be a finite number > 0"),
    (CONVERT, "missing_checkpoint", with_files(), ["--to", "tflite", *TINY64, "--weights", "none.safetensors"],
     "does not exist"),
    (CONVERT, "onnx_opset_too_old", with_files(), ["--to", "onnx", *TINY64, "--opset", "5"], "opset"),
    (CONVERT, "unknown_precision", with_files(), ["--to", "onnx", *TINY64, "--precision", "int4"], "--precision"),
    (CONVERT, "out_empty", with_files(), ["--to", "tflite", *TINY64, "--out", ""], "--out is empty"),
    (CONVERT, "model_empty", with_files(), ["--to", "tflite", "--model", ""], "--to and --model are required"),
    (CONVERT, "weights_empty", with_files(), ["--to", "tflite", *TINY64, "--weights", ""], "--weights is empty"),
    (CONVERT, "image_size_on_a_keras_file", keras_file(), ["--to", "onnx", "--model", "m.keras", "--image-size", "96"],
     "does not apply to m.keras"),
    (CONVERT, "truncated_keras_file", keras_file(cut=0.5), ["--to", "onnx", "--model", "m.keras"],
     "not a complete .keras archive"),
    (CONVERT, "keras_file_is_a_directory", with_files(("m.keras", None)), ["--to", "onnx", "--model", "m.keras"],
     "is a directory"),
    (TRAIN, "num_classes_against_the_labels", with_files(),
     ["--model", "tiny.json", "--data", "digits", "--out", "run", "--num-classes", "3"], "has 10 classes"),
    (TRAIN, "model_empty", with_files(), ["--model", "", "--out", "run"], "--model is empty"),
    (TRAIN, "out_empty", with_files(), ["--model", "tiny.json", "--out", ""], "--out is empty"),
    (TRAIN, "data_empty", with_files(), ["--model", "tiny.json", "--data", " ", "--out", "run"], "--data is empty"),
    (TRAIN, "teacher_empty", with_files(), ["--model", "tiny.json", "--teacher", "", "--out", "run"],
     "--teacher is empty"),
    (TRAIN, "truncated_teacher", keras_file("t.keras", cut=0.5), ["--model", "tiny.json", "--data", "digits",
                                                                  "--teacher", "t.keras", "--out", "run"],
     "not a complete .keras archive"),
    (TRAIN, "negative_epochs", with_files(), ["--model", "tiny.json", "--out", "run", "--epochs", "-1"], "--epochs"),
    (TRAIN, "zero_batch", with_files(), ["--model", "tiny.json", "--out", "run", "--batch-size", "0"],
     "--batch-size"),
    (TRAIN, "nan_lr", with_files(), ["--model", "tiny.json", "--out", "run", "--base-lr", "nan"], "--base-lr"),
    (TRAIN, "inf_lr", with_files(), ["--model", "tiny.json", "--out", "run", "--base-lr", "inf"], "--base-lr"),
    (TRAIN, "zero_classes", with_files(), ["--model", "tiny.json", "--out", "run", "--num-classes", "0"],
     "--num-classes"),
    (TRAIN, "drop_path_above_one", with_files(), ["--model", "tiny.json", "--out", "run", "--drop-path", "1.5"],
     "--drop-path"),
    (TRAIN, "negative_smoothing", with_files(),
     ["--model", "tiny.json", "--out", "run", "--label-smoothing", "-0.1"], "--label-smoothing"),
    (TRAIN, "ema_one", with_files(), ["--model", "tiny.json", "--out", "run", "--ema", "1"], "--ema"),
    (TRAIN, "nan_warmup", with_files(), ["--model", "tiny.json", "--out", "run", "--warmup-epochs", "nan"],
     "--warmup-epochs"),
    (TRAIN, "zero_steps", with_files(), ["--model", "tiny.json", "--out", "run", "--steps-per-epoch", "0"],
     "--steps-per-epoch"),
    (TRAIN, "negative_checkpoint_interval", with_files(),
     ["--model", "tiny.json", "--out", "run", "--checkpoint-every", "-1"], "--checkpoint-every"),
    (TRAIN, "zero_eval_steps", with_files(), ["--model", "tiny.json", "--out", "run", "--eval-steps", "0"],
     "--eval-steps"),
    (TRAIN, "verbose_out_of_range", with_files(), ["--model", "tiny.json", "--out", "run", "--verbose", "5"],
     "--verbose"),
    (TRAIN, "epochs_not_a_number", with_files(), ["--model", "tiny.json", "--out", "run", "--epochs", "abc"],
     "--epochs"),
    (TRAIN, "out_is_a_file", with_files(("run", "not a directory")), ["--model", "tiny.json", "--out", "run"],
     "is not a directory"),
    (TRAIN, "arch_string_depth", with_files(depths=[1, "x", 1, 2]), ["--model", "tiny.json", "--out", "run"],
     "depths must be a list of 4 integers"),
    (TRAIN, "image_size_not_multiple", with_files(),
     ["--model", "tiny.json", "--out", "run/nested", "--image-size", "48", "--steps-per-epoch", "1"],
     "multiples of 32"),
    (TRAIN, "missing_init_checkpoint", with_files(),
     ["--model", "tiny.json", "--out", "run", "--init-checkpoint", "none.safetensors", "--steps-per-epoch", "1"],
     "does not exist"),
    (TRAIN, "positional_argument", with_files(), ["--model", "tiny.json", "--out", "run", "extra"],
     "unexpected arguments"),
    (DESCRIBE, "image_is_a_directory", with_files(("photos", None)), ["--model", "tiny.json", "--image", "photos"],
     "is a directory, not an image file"),
    (DESCRIBE, "image_missing", with_files(), ["--model", "tiny.json", "--image", "cat.jpg"], "cat.jpg does not exist"),
    (DESCRIBE, "image_not_an_image", with_files(("cat.jpg", b"GIF89a broken")),
     ["--model", "tiny.json", "--image", "cat.jpg"], "cannot read image"),
    (DESCRIBE, "model_empty", with_files(), ["--model", ""], "--model needs variant names"),
    (DESCRIBE, "image_empty", with_files(), ["--model", "tiny.json", "--image", ""], "--image is empty"),
    (DESCRIBE, "checkpoint_is_a_directory", with_files(("ckpt", None)), ["--model", "tiny.json", "--weights", "ckpt"],
     "is a directory"),
    (DESCRIBE, "arch_not_utf8", lambda d: _write(os.path.join(d, "tiny.json"), b"\xff\xfe"),
     ["--model", "tiny.json"], "tiny.json is not UTF-8"),
    (DESCRIBE, "zero_runs", with_files(), ["--model", "tiny.json", "--runs", "0"], "--runs"),
    (DESCRIBE, "unknown_variant", with_files(), ["--model", "l9"], "unknown EfficientFormer model 'l9'"),
    (DESCRIBE, "imagenet_for_custom_arch", with_files(), ["--model", "tiny.json", "--weights", "imagenet"],
     "exists only for l1, l3 and l7"),
    (DESCRIBE, "missing_checkpoint", with_files(), ["--model", "tiny.json", "--weights", "none.safetensors"],
     "does not exist"),
    (LUT, "max_widths_not_integers", with_files(), ["--lut-out", "lut.json", "--max-widths", "96,abc"],
     "--max-widths must be comma-separated integers"),
    (LUT, "zero_threads", with_files(), ["--lut-out", "lut.json", "--threads", "0"], "--threads"),
    (SLIM, "target_and_target_like", with_files(), ["--target", "12", "--target-like", "l1", "--out", "o"],
     "exactly one of --target"),
    (SLIM, "paper_iphone_figure_on_the_host_lut", with_files(), ["--target", "1.6", "--out", "o"], "iPhone 12 CoreML"),
    (SLIM, "nan_target", with_files(), ["--target", "nan", "--out", "o"], "positive number of milliseconds"),
    (SLIM, "out_is_a_file", with_files(("o", b"not a directory")), ["--target", "12", "--out", "o"],
     "is not a directory"),
    (SLIM, "missing_lut", with_files(), ["--target", "12", "--lut", "none.json", "--out", "o"], "not found"),
    (SLIM, "v2_lut", with_files(), ["--target", "12", "--lut", V2_LUT, "--out", "o"], "v2 family"),
    (SLIM, "zero_confirm_images", with_files(), ["--target", "12", "--confirm-images", "0", "--out", "o"],
     "confirm_images"),
    (SLIM, "negative_screen_images", with_files(), ["--target", "12", "--screen-images", "-5", "--out", "o"],
     "screen_images"),
    (SLIM, "negative_calibration_images", with_files(),
     ["--target", "12", "--calibration-images", "-1", "--out", "o"], "calibration_images"),
    (SUPERNET, "nan_lr", with_files(), ["--lr", "nan", "--out", "o"], "lr must be a finite number > 0"),
    (SUPERNET, "zero_batch", with_files(), ["--batch-size", "0", "--data", "digits", "--out", "o"],
     "batch_size must be a positive integer"),
    (SUPERNET, "widths_not_integers", with_files(), ["--max-widths", "96,abc", "--out", "o"],
     "--max-widths must be comma-separated integers"),
    (SUPERNET, "min_above_max", with_files(), ["--min-widths", "32,64,128,640", "--out", "o"],
     "stage 4: widths 640..512"),
    (SUPERNET, "empty_stage", with_files(), ["--depths", "4,0,6,4", "--out", "o"], "at least one block"),
]
#: Not bad input but a diverging run: lr 1e30 makes the loss non-finite at step 2 (the run dir stays).
NAN_LOSS = (TRAIN, "nan_loss", with_files(),
            ["--model", "tiny.json", "--out", "run", "--base-lr", "1e30", "--warmup-epochs", "0", "--epochs", "1",
             "--steps-per-epoch", "4", "--checkpoint-every", "1", "--eval-steps", "1", "--verbose", "0"], None)


def snapshot(root):
    """Every path under `root` (hidden ones included) with its kind and content hash."""
    state = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs:
            state[os.path.relpath(os.path.join(directory, name), root)] = "dir"
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                state[os.path.relpath(path, root)] = hashlib.sha1(f.read()).hexdigest()
    return state


def our_lines(stderr):
    return [line for line in stderr.splitlines() if line.strip() and not TF_LOG.match(line)]


def assert_clean_failure(rc, stderr, message):
    lines = our_lines(stderr)
    assert rc not in (0, None), stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], stderr[-3000:]


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """Runs every CLI case, all processes in parallel; (id, cli) -> (rc, stderr, snapshot before, after)."""
    root = tmp_path_factory.mktemp("bad_input")
    before, specs, procs = {}, {}, []
    for cli, case_id, setup, argv, _ in [*CASES, NAN_LOSS]:
        d = root / f"{cli}.{case_id}"
        d.mkdir()
        setup(str(d))
        before[case_id, cli] = snapshot(str(d))
        if cli in SUBPROCESS_CLIS:
            procs.append((cli, case_id, subprocess.Popen(
                [sys.executable, "-m", cli, *argv], env=ENV, cwd=str(d), stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True)))
        else:
            specs.setdefault(cli, []).append({"id": case_id, "cwd": str(d), "argv": argv})
    for cli, cases in specs.items():
        cases_path = root / f"{cli}.cases.json"
        cases_path.write_text(json.dumps(cases))
        procs.append((cli, None, subprocess.Popen(
            [sys.executable, DRIVER, cli, str(cases_path), str(root / f"{cli}.results.json")], env=ENV,
            cwd=str(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    raw = {}
    for cli, case_id, proc in procs:
        log = proc.communicate(timeout=600)[1 if case_id else 0]
        if case_id:
            raw[case_id, cli] = (proc.returncode, log)
            continue
        assert proc.returncode == 0, log[-3000:]
        for case_id, r in json.loads((root / f"{cli}.results.json").read_text()).items():
            raw[case_id, cli] = (r["rc"], r["stderr"])
    return {key: (rc, stderr, before[key], snapshot(str(root / f"{key[1]}.{key[0]}")))
            for key, (rc, stderr) in raw.items()}


@pytest.mark.parametrize("cli, case_id, message", [(c[0], c[1], c[4]) for c in CASES],
                         ids=[f"{c[0].split('.')[-1]}-{c[1]}" for c in CASES])
def test_cli_bad_input(cli_results, cli, case_id, message):
    rc, stderr, before, after = cli_results[case_id, cli]
    assert_clean_failure(rc, stderr, message)
    assert after == before


def test_training_stops_on_the_first_non_finite_loss_keeping_the_last_good_checkpoint(cli_results):
    rc, stderr, _, after = cli_results[NAN_LOSS[1], TRAIN]
    assert_clean_failure(rc, stderr, "the training loss became")
    kept = re.search(r"ckpt-(\d+)", our_lines(stderr)[0]).group(1)
    assert f"run/checkpoints/ckpt-{kept}.index" in after and "run/model.keras" not in after
    assert not [name for name in after if ".tmp" in name]


# --------------------------------------------------------------------------- Python API
@pytest.mark.parametrize("build, message", [
    (lambda: ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=True), "classes must be a positive"),
    (lambda: ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=2.0), "classes must be a positive"),
    (lambda: ef_keras.EfficientFormer(TINY, input_shape=(0, 0, 3)), "input_shape (0, 0, 3)"),
    (lambda: ef_keras.EfficientFormer(TINY, input_shape=(64, 64, True)), "input_shape must be (height, width, 3)"),
    (lambda: ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, drop_path_rate="abc"), "drop_path_rate"),
    (lambda: ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, drop_path_rate=math.nan), "drop_path_rate"),
    (lambda: ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, include_top=1), "include_top"),
    (lambda: ef_keras.EfficientFormerConfig(widths=(16, 32, 48, 64), depths=(1, 1, 1, 2), num_vit=1,
                                            layer_scale_init=math.inf), "layer_scale_init"),
    (lambda: ef_keras.EfficientFormerConfig(widths=(16.0, 32, 48, 64), depths=(1, 1, 1, 2), num_vit=1), "widths"),
    (lambda: ef_keras.EfficientFormerConfig(widths=(16, 32, 48, 64), depths=(1, 1, 1, 2), num_vit=True),
     "num_vit"),
    (lambda: ef_keras.load_weights_from_checkpoint(ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT), None),
     "a checkpoint path"),
    (lambda: EMBEDDED.replace(epochs=True), "epochs"),
    (lambda: EMBEDDED.replace(min_lr=-1e-5), "min_lr"),
    (lambda: EMBEDDED.replace(crop_pct=0.0), "crop_pct"),
    (lambda: AndroidSettings(threads=True), "threads must be a positive integer"),
    (lambda: AndroidSettings(num_runs=50.5), "num_runs"),
])
def test_constructor_bad_input(build, message):
    with pytest.raises(EfKerasError) as err:
        build()
    assert message in str(err.value) and "\n" not in str(err.value)


def _image(shape, fill=128.0):
    return np.full(shape, fill, "float32")


def _train_digits(tmp, **kwargs):
    from ef_keras.training import loop

    return loop.train(TINY, "digits", out_dir=str(tmp), verbose=0, **kwargs)


#: (id, call(tmp_path), expected part of the one-line message): the Python API's bad input (issue 23).
API_CASES = [
    ("eval_transform_grey", lambda t: ef_keras.eval_transform(_image((40, 50))), "a grey image needs 3 channels"),
    ("eval_transform_rgba", lambda t: ef_keras.eval_transform(_image((40, 50, 4))), "drop the alpha channel"),
    ("eval_transform_empty", lambda t: ef_keras.eval_transform(_image((0, 0, 3))), "empty image"),
    ("eval_transform_crop_zero", lambda t: ef_keras.eval_transform(_image((40, 50, 3)), crop_pct=0), "crop_pct"),
    ("eval_transform_crop_nan", lambda t: ef_keras.eval_transform(_image((40, 50, 3)), crop_pct=math.nan),
     "crop_pct"),
    ("eval_transform_negative_size", lambda t: ef_keras.eval_transform(_image((40, 50, 3)), image_size=-5),
     "image_size must be a positive integer"),
    ("eval_transform_tiny_crop", lambda t: ef_keras.eval_transform(_image((40, 50, 3)), 32, crop_pct=1e-200),
     "over 8192"),
    ("eval_transform_nan_image", lambda t: ef_keras.eval_transform(_image((40, 50, 3), math.nan)),
     "NaN, Inf or out-of-range pixel values"),
    ("preprocess_input_unknown_preset", lambda t: ef_keras.preprocess_input(_image((8, 8, 3)), preset="l9"),
     "unknown preset 'l9'"),
    ("preprocess_input_grey", lambda t: ef_keras.preprocess_input(_image((2, 8, 8))), "(H, W, 3)"),
    ("decode_predictions_nan", lambda t: ef_keras.decode_predictions(np.full((1, 1000), np.nan)), "NaN or Inf scores"),
    ("model_info_unknown_lists_every_family", lambda t: ef_keras.model_info("zz"), "l1, l3, l7, s0, s1, s2, l"),
    ("checkpoint_is_a_directory", lambda t: ef_keras.weights.read_state_dict(str(t)), "is a directory"),
    ("checkpoint_empty_path", lambda t: ef_keras.weights.read_state_dict(""), "path is empty"),
    ("save_checkpoint_not_safetensors", lambda t: ef_keras.save_checkpoint(None, str(t / "w.pth")), ".safetensors"),
    ("train_num_classes_against_labels", lambda t: _train_digits(t / "run", num_classes=3),
     "'digits' has 10 classes"),
    ("train_recipe_not_a_recipe", lambda t: _train_digits(t / "run", recipe={"epochs": 1}), "must be an"),
]


@pytest.mark.parametrize("call, message", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input(tmp_path, call, message):
    with pytest.raises(EfKerasError) as err:
        call(tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not os.path.exists(tmp_path / "run")  # refused before a run directory was made


class _FirstLine(Exception):
    """Stops a training run at its first logged line."""


def _stop(line):
    raise _FirstLine(line)


@pytest.mark.parametrize("given, expected", [
    (None, "with the embedded recipe: 64 px, batch 64, 15 epochs"),
    ("paper", "with the paper recipe: 224 px, batch 3072, 300 epochs"),
])
def test_training_on_small_data_defaults_to_the_embedded_recipe_and_says_which(tmp_path, given, expected):
    from ef_keras.training import recipe

    with pytest.raises(_FirstLine) as first:
        _train_digits(tmp_path / "run", recipe=given and recipe.RECIPES[given], log=_stop)
    assert expected in str(first.value)
    assert ("ImageNet-size recipe on a small dataset" in str(first.value)) == (given == "paper")


def test_a_segmentation_teacher_saved_to_keras_is_refused_in_one_line(tmp_path):
    from ef_keras.tasks.segmentation import SemanticFPN, mobilenet_v3_large_pyramid
    from ef_keras.training import loop

    path = str(tmp_path / "fpn.keras")
    SemanticFPN(mobilenet_v3_large_pyramid((64, 64, 3)), num_classes=3, fpn_channels=32, head_channels=32).save(path)
    with pytest.raises(loop.TrainError) as err:
        loop.load_teacher(path, num_classes=3)
    assert "must be an image classifier" in str(err.value) and len(str(err.value)) < 400


def test_training_builds_either_family():
    from ef_keras.training import loop

    assert type(loop.build_model("s0", num_classes=10, image_size=64)).__name__ == "EfficientFormerV2"
    assert type(loop.build_model(TINY, num_classes=10, image_size=64)).__name__ == "EfficientFormer"


def test_checkpoint_with_a_nan_tensor_is_refused_naming_the_key(parity_fixture, tmp_path):
    state = dict(parity_fixture("l1").state_dict("timm"))
    key = "stages.2.blocks.3.mlp.fc1.weight"
    state[key] = state[key].copy()
    state[key][0, 0] = np.nan
    path = str(tmp_path / "nan.safetensors")
    save_file(state, path)
    model = ef_keras.EfficientFormerL1()
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(ef_keras.CheckpointError, match=re.escape(key) + " holds NaN or Inf"):
        ef_keras.load_weights_from_checkpoint(model, path)
    for w, b in zip(model.weights, before):  # nothing was assigned
        np.testing.assert_array_equal(w.numpy(), b)


def test_overwrite_replaces_files_and_our_packages_never_other_directories(tmp_path):
    foreign = tmp_path / "model.mlpackage"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("precious")
    with pytest.raises(output.OutputError, match="did not write"):
        output.check_output(str(foreign), overwrite=True, suffix=".mlpackage", ours=output.is_mlpackage)
    assert (foreign / "notes.txt").read_text() == "precious"
    (foreign / "Manifest.json").write_text("{}")  # now it is a package as Core ML writes them
    assert output.check_output(str(foreign), overwrite=True, suffix=".mlpackage", ours=output.is_mlpackage)
    target = tmp_path / "a.json"
    target.write_text("old")
    output.write_json(str(target), {"new": 1})
    assert json.loads(target.read_text()) == {"new": 1} and sorted(os.listdir(tmp_path)) == ["a.json", foreign.name]


def test_failed_write_leaves_nothing_and_stale_temps_of_dead_runs_go(tmp_path):
    target = str(tmp_path / "out.tflite")
    with pytest.raises(RuntimeError):
        with output.writing(target) as tmp:
            _write(tmp, b"partial")
            raise RuntimeError("converter crashed")
    assert os.listdir(tmp_path) == []
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.tflite.tmp-{int(dead.stdout)}-0123abcd.tflite"
    live = tmp_path / f".out.tflite.tmp-{os.getppid()}-0123abcd.tflite"  # a concurrent writer, still running
    stale.write_bytes(b"left by kill -9")
    live.write_bytes(b"being written")
    output.check_output(target)
    assert sorted(os.listdir(tmp_path)) == [live.name]


@pytest.fixture(scope="module")
def tiny_model():
    return ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=10)


def _lut_doc():
    with open(os.path.join(ROOT, "android_ios_bench", "luts", "host_x86_2core_fp32.json"), encoding="utf-8") as f:
        return json.load(f)


def _manifest_doc():
    from android_ios_bench import lut as L

    return {"format": L.MANIFEST_FORMAT, "version": 1, "created": L.now_iso(), "precision": "fp32",
            "search_space": _lut_doc()["search_space"], "entries": []}


def _plot(path):
    from search.slim import plot_trajectory

    arch = {"widths": [48, 96, 224, 448], "depths": [3, 2, 6, 4], "vit": 1}
    plot_trajectory({"target_ms": 1.0, "steps": [{"step": 0, "latency_ms": 2.0, "acc": 50.0, "arch": arch}]}, path)


#: Every writer of a user-named file: (name, file name, write(model, path)). Each goes through ef_keras.output.
WRITERS = [
    ("save_checkpoint", "w.safetensors", lambda m, p: ef_keras.save_checkpoint(m, p)),
    ("save_checkpoint_no_overwrite", "w.safetensors", lambda m, p: ef_keras.save_checkpoint(m, p, overwrite=False)),
    ("keras_save_model", "m.keras", lambda m, p: __import__("ef_keras.saving").saving.save_model(m, p)),
    ("config_save", "arch.json", lambda m, p: m.config.save(p)),
    ("write_json", "r.json", lambda m, p: output.write_json(p, {"a": 1})),
    ("write_text", "r.md", lambda m, p: output.write_text(p, "table")),
    ("save_lut", "lut.json", lambda m, p: __import__("android_ios_bench.lut").lut.save_lut(_lut_doc(), p)),
    ("save_manifest", "manifest.json",
     lambda m, p: __import__("android_ios_bench.lut").lut.save_manifest(_manifest_doc(), p)),
    ("plot", "trajectory.png", lambda m, p: _plot(p)),
    ("to_tflite", "m.tflite", lambda m, p: __import__("deploy").to_tflite(m, p, overwrite=True)),
    ("to_onnx", "m.onnx", lambda m, p: __import__("deploy").to_onnx(m, p, overwrite=True)),
    ("to_coreml", "m.mlpackage", lambda m, p: __import__("deploy").to_coreml(m, p, overwrite=True)),
]


@pytest.mark.parametrize("write, name", [(w[2], w[1]) for w in WRITERS], ids=[w[0] for w in WRITERS])
def test_a_directory_passed_to_any_writer_survives_untouched(tiny_model, tmp_path, write, name):
    target = tmp_path / name
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    (target / "sub").mkdir()
    before = snapshot(str(tmp_path))
    with pytest.raises(EfKerasError, match="is a directory this tool did not write") as err:
        write(tiny_model, str(target))
    assert "\n" not in str(err.value)
    assert snapshot(str(tmp_path)) == before  # nothing changed, no temp file left beside it


def test_a_directory_appearing_before_the_commit_is_not_replaced(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(output.OutputError, match="did not write"):
        with output.writing(str(target)) as tmp:
            _write(tmp, "new")
            target.mkdir()  # created by someone else while we were writing
            (target / "keep.txt").write_text("precious")
    assert sorted(os.listdir(tmp_path)) == ["out.json"] and (target / "keep.txt").read_text() == "precious"


def test_scratch_directories_go_beside_the_output_never_the_system_temp(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with output.scratch_directory(str(tmp_path / "m.tflite")) as beside, output.scratch_directory() as cached:
        assert os.path.dirname(beside) == str(tmp_path) and os.path.isdir(beside)
        assert cached.startswith(str(tmp_path / "cache" / "ef_keras" / "scratch" / "."))
    assert not os.path.exists(beside) and not os.path.exists(cached)


KILLED_WRITER = """
import os, signal, sys, time
sys.path.insert(0, {root!r})
from ef_keras import output
from ef_keras.cli import exit_on_sigterm
exit_on_sigterm() if sys.argv[1] == "term" else None
with output.scratch_directory({beside!r}) as scratch, output.writing({target!r}) as tmp:
    open(os.path.join(scratch, "saved_model.pb"), "wb").write(b"x" * 1000)
    open(tmp, "wb").write(b"partial")
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("how", ["term", "kill"])
def test_a_killed_writer_leaves_nothing_after_sigterm_and_the_next_run_cleans_after_kill_9(tmp_path, how):
    target = str(tmp_path / "m.tflite")
    code = KILLED_WRITER.format(root=ROOT, beside=target, target=target)
    proc = subprocess.Popen([sys.executable, "-c", code, how], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    assert len(os.listdir(tmp_path)) == 2  # the scratch directory and the temp file, beside the output
    proc.send_signal(signal.SIGTERM if how == "term" else signal.SIGKILL)
    proc.wait(timeout=60)
    if how == "term":  # finally blocks and the atexit handler ran
        assert proc.returncode == 143 and os.listdir(tmp_path) == []
    else:  # nothing could run; the next write beside it removes what the dead process left
        assert len(os.listdir(tmp_path)) == 2
        output.write_text(str(tmp_path / "other.txt"), "next run")
        assert os.listdir(tmp_path) == ["other.txt"]


def test_failed_run_start_leaves_no_empty_run_directory(tmp_path):
    run = tmp_path / "runs" / "a"
    with pytest.raises(EfKerasError):
        with output.run_directory(str(run)):
            os.makedirs(run / "checkpoints")
            raise EfKerasError("bad data")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- kill -9
@pytest.mark.slow  # two real conversions: about 50 s on 2 busy cores
def test_kill_9_mid_conversion_then_rerun_cleans_the_leftover(tmp_path):
    arch(str(tmp_path))
    argv = [sys.executable, os.path.join(ROOT, "deploy", "convert.py"), "--to", "tflite", *TINY64, "--out", "m.tflite"]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    temps = []
    while not temps and proc.poll() is None and time.time() < deadline:
        temps = [n for n in os.listdir(tmp_path) if n.startswith(".m.tflite.tmp-") and
                 os.path.getsize(tmp_path / n) > 0]
        time.sleep(0.05)
    assert temps, "the conversion ended before its temp file was seen"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "m.tflite").exists() and os.path.exists(tmp_path / temps[0])
    rerun = subprocess.run(argv, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert sorted(os.listdir(tmp_path)) == ["m.tflite", "m.tflite.report.json", "tiny.json"]



@pytest.mark.parametrize("median", [0.0, -0.5])
def test_lut_with_zero_or_negative_latencies_is_refused(median):
    from android_ios_bench.lut import LUTError, load_lut

    with open(os.path.join(ROOT, "android_ios_bench", "luts", "host_x86_2core_fp32.json"), encoding="utf-8") as f:
        doc = json.load(f)
    for entry in doc["entries"].values():
        entry["median_ms"] = median
    with pytest.raises(LUTError, match="median_ms"):
        load_lut(doc)
