"""EfficientFormerV2 converts to TFLite with builtin ops only, in one XNNPACK partition, verified.

A small V2 architecture (every V2 unit: strided attention with its bilinear upsampling, the
attention downsampling, talking heads) at 64x64 keeps this in the default suite; the named
variants are converted by the registry battery (`tests/test_registry.py`, slow). One partition
guards against ops the XNNPACK delegate refuses (e.g. a stride-2 strided slice).
"""

import numpy as np
import pytest

from deploy.testing import randomize_weights
from ef_keras.models.efficientformer_v2.config import EfficientFormerV2Config
from ef_keras.models.efficientformer_v2.model import EfficientFormerV2

TINY_V2 = EfficientFormerV2Config(widths=(16, 16, 32, 32), depths=(1, 1, 2, 2), num_vit=1,
                                  mlp_ratios=(4, 4, (4, 3), (3, 4)), name="tiny_v2", key_dim=8, num_heads=2)


def test_tiny_v2_converts_to_one_xnnpack_partition(tmp_path):
    from deploy.tflite import to_tflite

    # far from init, so every branch shows in the verification
    model = randomize_weights(EfficientFormerV2(TINY_V2, input_shape=(64, 64, 3), classes=10))
    report = to_tflite(model, str(tmp_path / "tiny_v2.tflite"))  # raises DeployError if the numerics disagree
    assert report["verification"]["max_rel_diff"] <= report["verification"]["tolerance"]
    assert report["xnnpack"]["partitions"] == 1 and report["xnnpack"]["fully_delegated"]
    assert report["op_census"]["RESIZE_BILINEAR"] == 1 and "STRIDED_SLICE" not in report["op_census"]
    # Layout ops: 7 per Attention4D (q, k and v to tokens, v's and the attention's heads axis, the output back to
    # a map; the talking heads need none), 8 in the attention downsampling, 1 where the two heads are averaged.
    layout = report["reshape_transpose_gather"]
    assert layout["reshape"] + layout["transpose"] == 7 * 2 + 8 + 1 and layout["gather"] == 0


def test_mil_upsample_bilinear_on_hand_worked_values():
    """deploy.mil_eval's upsample_bilinear (what Core ML gets for V2's x2 upsampling), both corner modes."""
    import deploy.mil_eval as mil_eval

    x = np.array([1.0, 3.0], np.float32).reshape(1, 1, 1, 2)
    up = mil_eval._OPS["upsample_bilinear"]
    # half-pixel centres (PyTorch align_corners=False): [a, 3a/4 + b/4, a/4 + 3b/4, b]
    np.testing.assert_allclose(up(x, 1, 2, align_corners=False)[0, 0, 0], [1.0, 1.5, 2.5, 3.0], atol=1e-6)
    # align_corners=True: [a, a + (b-a)/3, a + 2(b-a)/3, b]
    np.testing.assert_allclose(up(x, 1, 2, align_corners=True)[0, 0, 0], [1.0, 5 / 3, 7 / 3, 3.0], atol=1e-6)
    # neither (legacy TF): source d/2 -> [a, (a+b)/2, b, b]
    np.testing.assert_allclose(up(x, 1, 2, align_corners=False, half_pixel_centers=False)[0, 0, 0],
                               [1.0, 2.0, 3.0, 3.0], atol=1e-6)


@pytest.mark.slow
def test_tiny_v2_converts_to_coreml_verified(tmp_path):
    from deploy.coreml import to_coreml

    model = EfficientFormerV2(TINY_V2, input_shape=(64, 64, 3), classes=10)
    report = to_coreml(model, str(tmp_path / "tiny_v2.mlpackage"), precision="fp32")
    assert report["verification"]["verified"] and report["op_census"]["upsample_bilinear"] == 1
