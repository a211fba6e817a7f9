"""Checks that run under a non-TensorFlow Keras backend, in a subprocess that `tests/test_backends.py` starts.

Not collected by the default run (the name has no `test_` prefix): the backend is fixed per
process, so `test_backends.py` runs this file with `KERAS_BACKEND=jax` (or `torch`) together with
the timm parity tests. `EF_KERAS_EXCHANGE` names the directory the two processes share: the
TensorFlow process leaves `<family>_tensorflow.keras` and its inputs/outputs there, and this one
leaves `<family>_<backend>.keras` with its outputs for the TensorFlow process to load back.
"""

import os

import keras
import numpy as np
import pytest
from helpers import TINY_CONFIGS, images, tiny_model

from deploy.testing import randomize_weights
from ef_keras.errors import BackendError, one_line

BACKEND = keras.backend.backend()
EXCHANGE = os.environ.get("EF_KERAS_EXCHANGE", "")
#: Largest |difference| between one backend's outputs and another's for the same tiny model and weights.
TOLERANCE = 1e-5

pytestmark = pytest.mark.skipif(BACKEND == "tensorflow" or not EXCHANGE,
                                reason="run by tests/test_backends.py under KERAS_BACKEND=jax or torch")


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_a_keras_file_saved_under_tensorflow_gives_its_outputs_here(family):
    saved = np.load(os.path.join(EXCHANGE, f"{family}_tensorflow.npz"))
    model = keras.saving.load_model(os.path.join(EXCHANGE, f"{family}_tensorflow.keras"))
    assert np.max(np.abs(keras.ops.convert_to_numpy(model(saved["x"], training=False)) - saved["y"])) <= TOLERANCE
    # ... and one made here goes back: the TensorFlow process loads it and compares with these outputs.
    model = randomize_weights(tiny_model(family), seed=2)
    x = images(model.input_shape[1:], seed=2)
    model.save(os.path.join(EXCHANGE, f"{family}_{BACKEND}.keras"))
    np.savez(os.path.join(EXCHANGE, f"{family}_{BACKEND}.npz"), x=x,
             y=keras.ops.convert_to_numpy(model(x, training=False)))


def _convert():
    from deploy.convert import convert

    convert("onnx", "l1", out=os.path.join(EXCHANGE, "never.onnx"))


def _train():
    from ef_keras.training.loop import train

    train(TINY_CONFIGS["v1"], out_dir=os.path.join(EXCHANGE, "never_run"))


def _train_supernet():
    from search.train_supernet import train_supernet

    train_supernet(os.path.join(EXCHANGE, "never_supernet"))


def _build_lut():
    from android_ios_bench.host.cli import build_lut

    build_lut(os.path.join(EXCHANGE, "never_lut.json"))


@pytest.mark.parametrize("call, feature", [
    (_convert, "conversion to onnx"),
    (_train, "training (tf.data and tf.distribute)"),
    (_train_supernet, "supernet training (tf.data and tf.distribute)"),
    (_build_lut, "the LUT harness (TFLite export)"),
])
def test_a_tool_needing_tensorflow_says_so_in_one_line_and_writes_nothing(call, feature):
    before = sorted(os.listdir(EXCHANGE))
    with pytest.raises(BackendError) as info:
        call()
    assert one_line(info.value) == (f"{feature} runs on the TensorFlow backend only, and Keras is running on "
                                    f"{BACKEND}: run it with KERAS_BACKEND=tensorflow")
    assert sorted(os.listdir(EXCHANGE)) == before
