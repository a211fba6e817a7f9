"""deploy/convert.py: one subprocess run per target, and every bad input of issue 3."""

import json
import os
import subprocess
import sys

import pytest

from deploy import DeployError, convert

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_ARCH = {"widths": [16, 32, 48, 64], "depths": [1, 1, 1, 2], "num_vit": 1, "name": "tinyarch"}


@pytest.fixture
def arch(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY_ARCH))
    return str(path)


def _cli(*args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, os.path.join(REPO, "deploy", "convert.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("target,ext,extra", [
    ("tflite", ".tflite", []),
    ("coreml", ".mlpackage", ["--precision", "fp32"]),
    ("onnx", ".onnx", []),
])
def test_cli_converts_architecture_json(target, ext, extra, arch, tmp_path):
    proc = _cli("--to", target, "--model", arch, "--image-size", "64", *extra, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    precision = extra[1] if extra else "fp32"
    out = tmp_path / f"tiny_{precision}{ext}"
    assert out.exists()
    report = json.loads((tmp_path / f"tiny_{precision}{ext}.report.json").read_text())
    assert report["verification"]["verified"] and report["architecture"]["name"] == "tinyarch"
    assert "verified vs Keras" in proc.stdout


def _assert_clean_failure(proc, message, tmp_path, before):
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == before


def test_cli_bad_inputs_exit_cleanly(arch, tmp_path):
    before = sorted(os.listdir(tmp_path))
    _assert_clean_failure(_cli("--to", "tensorrt", "--model", "l1", cwd=tmp_path), "unknown --to", tmp_path, before)
    _assert_clean_failure(_cli("--to", "tflite", "--model", arch, "--precision", "int8", cwd=tmp_path),
                          "calibration", tmp_path, before)
    _assert_clean_failure(_cli("--to", "onnx", "--model", str(tmp_path / "nope.keras"), cwd=tmp_path),
                          "does not exist", tmp_path, before)


def test_bad_inputs(arch, tmp_path):
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    bad_arch = tmp_path / "bad.json"
    bad_arch.write_text(json.dumps({**TINY_ARCH, "widths": [15, 32, 48, 64]}))
    bad_ckpt = tmp_path / "bad.safetensors"
    bad_ckpt.write_bytes(b"\x00" * 16)
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    os.chmod(readonly, 0o555)
    existing = tmp_path / "exists.onnx"
    existing.write_bytes(b"x")
    before = sorted(os.listdir(tmp_path))
    cases = [
        (dict(to="tflite", model=str(corrupt)), "not a complete .keras archive"),
        (dict(to="tflite", model=str(tmp_path / "missing.keras")), "does not exist"),
        (dict(to="tflite", model=str(bad_arch)), "invalid architecture"),
        (dict(to="tflite", model="l9"), "give l1, l3, l7"),
        (dict(to="tflite", model=arch, weights=str(bad_ckpt)), "cannot load checkpoint"),
        (dict(to="tflite", model=arch, weights=str(tmp_path / "missing.safetensors")), "does not exist"),
        (dict(to="tflite", model=arch, precision="int8"), "calibration"),
        (dict(to="onnx", model=arch, precision="fp16"), "not available for onnx"),
        (dict(to="onnx", model=arch, out=str(existing)), "--overwrite"),
        (dict(to="tflite", model=arch, image_input=True), "coreml only"),
        (dict(to="caffe", model=arch), "unknown --to"),
    ]
    # root ignores directory permissions, but not /proc
    unwritable = readonly / "m.tflite" if os.geteuid() != 0 else "/proc/m.tflite"
    cases.append((dict(to="tflite", model=arch, out=str(unwritable)), "not writable"))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for kwargs, message in cases:
            to, model = kwargs.pop("to"), kwargs.pop("model")
            kwargs.setdefault("image_size", 64)
            with pytest.raises(DeployError, match=message):
                convert.convert(to, model, **kwargs)
            assert "\n" not in message
    finally:
        os.chdir(cwd)
        os.chmod(readonly, 0o755)
    assert sorted(os.listdir(tmp_path)) == before
