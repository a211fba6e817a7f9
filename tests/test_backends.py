"""The models under Keras' JAX and PyTorch backends (issue 22): timm parity, `.keras` files across backends.

The backend is fixed per process, so each check starts one subprocess with `KERAS_BACKEND` set
that runs `tests/backend_checks.py` and the L1 and S0 timm parity tests (the committed fixtures,
made by running timm). This process (TensorFlow) writes a `.keras` file for the subprocess to load
and loads back the one the subprocess wrote, comparing outputs both ways. JAX is in the `[test]`
extra, so CI runs the JAX check; the PyTorch one is in the slow suite and needs torch installed.
"""

import importlib.util
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from backend_checks import TOLERANCE
from helpers import TINY_CONFIGS, images, tiny_model

from deploy.testing import randomize_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The parity tests run under the other backend: one V1 and one V2 model through a timm-layout checkpoint.
PARITY = ("tests/test_parity.py::test_l1_matches_timm_through_a_safetensors_checkpoint[timm]",
          "tests/test_v2_parity.py::test_s0_matches_timm_through_a_safetensors_checkpoint[timm]")


def _check_backend(backend, tmp_path):
    for family in sorted(TINY_CONFIGS):
        model = randomize_weights(tiny_model(family))
        x = images(model.input_shape[1:])
        model.save(tmp_path / f"{family}_tensorflow.keras")
        np.savez(tmp_path / f"{family}_tensorflow.npz", x=x, y=model.predict(x, verbose=0))
    env = {**os.environ, "KERAS_BACKEND": backend, "EF_KERAS_EXCHANGE": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/backend_checks.py",
                           *PARITY], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # Every check ran (none skipped): 2 .keras families, 4 tools, 2 parity tests.
    assert re.search(r"^8 passed", proc.stdout.splitlines()[-1]), proc.stdout[-2000:]
    for family in sorted(TINY_CONFIGS):
        saved = np.load(tmp_path / f"{family}_{backend}.npz")
        model = keras.saving.load_model(tmp_path / f"{family}_{backend}.keras")
        assert np.max(np.abs(model.predict(saved["x"], verbose=0) - saved["y"])) <= TOLERANCE


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason='needs jax: pip install ".[test]"')
def test_jax_backend_matches_timm_and_reads_and_writes_keras_files_of_tensorflow(tmp_path):
    _check_backend("jax", tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch (not part of any extra's tests)")
def test_torch_backend_matches_timm_and_reads_and_writes_keras_files_of_tensorflow(tmp_path):
    _check_backend("torch", tmp_path)
