"""`.keras` files written by earlier releases load with today's code, with the same outputs and layer names.

Each fixture was written by the old release itself (tests/fixtures/README.md, "0.1 and 0.2 `.keras`
files"), which also recorded the inputs, outputs and layer names beside it; nothing here is computed
by the code under test.
"""

import os

import keras
import numpy as np
import pytest

import ef_keras

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


@pytest.mark.parametrize("name, cls", [
    ("v0_1_tiny", ef_keras.EfficientFormer),
    ("v0_2_v1_tiny", ef_keras.EfficientFormer),
    ("v0_2_v2_tiny", ef_keras.EfficientFormerV2),
    ("v0_2_v1_pyramid", ef_keras.EfficientFormer),
])
def test_keras_files_of_earlier_releases_load_with_the_same_outputs(name, cls):
    model = keras.saving.load_model(os.path.join(FIXTURES, f"{name}.keras"))
    io = np.load(os.path.join(FIXTURES, f"{name}_io.npz"))
    assert type(model) is cls
    y = model.predict(io["x"], verbose=0)
    recorded = {k.removeprefix("y_"): io[k] for k in io.files if k.startswith("y_")} or io["y"]
    if isinstance(recorded, dict):
        assert sorted(y) == sorted(recorded)
        for level, value in recorded.items():
            np.testing.assert_allclose(y[level], value, rtol=1e-5, atol=1e-6, err_msg=level)
    else:
        np.testing.assert_allclose(y, recorded, rtol=1e-5, atol=1e-6)
    assert [layer.name for layer in model.layers] == list(io["layer_names"])  # get_layer("stage3_block2") still works
