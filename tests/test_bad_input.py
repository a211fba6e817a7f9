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
     "is not an image file"),
    (DESCRIBE, "image_missing", with_files(), ["--model", "tiny.json", "--image", "cat.jpg"], "is not an image file"),
    (DESCRIBE, "image_not_an_image", with_files(("cat.jpg", b"GIF89a broken")),
     ["--model", "tiny.json", "--image", "cat.jpg"], "cannot read image"),
    (DESCRIBE, "arch_not_utf8", lambda d: _write(os.path.join(d, "tiny.json"), b"\xff\xfe"),
     ["--model", "tiny.json"], "tiny.json is not UTF-8"),
    (DESCRIBE, "zero_runs", with_files(), ["--model", "tiny.json", "--runs", "0"], "--runs"),
    (DESCRIBE, "unknown_variant", with_files(), ["--model", "l9"], "unknown EfficientFormer model 'l9'"),
    (DESCRIBE, "imagenet_for_custom_arch", with_files(), ["--model", "tiny.json", "--weights", "imagenet"],
     "exists only for l1, l3 and l7"),
    (DESCRIBE, "missing_checkpoint", with_files(), ["--model", "tiny.json", "--weights", "none.safetensors"],
     "not found"),
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
