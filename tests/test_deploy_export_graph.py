"""deploy.export_graph: layer scales folded into the linear op before them, and the int8 rewrites, are the same function."""

import keras
import numpy as np
import pytest

import deploy
import ef_keras
from deploy import common, export_graph, report as report_lib, testing, verify
from ef_keras.models.efficientformer.config import EfficientFormerConfig
from ef_keras.models.efficientformer_v2.config import EfficientFormerV2Config
from ef_keras.models.efficientformer_v2.model import EfficientFormerV2
from tests.helpers import TINY, TINY_INPUT

#: A searched-like architecture: empty early stages and no attention (what the digits proxy search returned),
#: and one with attention on a non-square grid.
SEARCHED = EfficientFormerConfig(widths=(16, 32, 48, 64), depths=(0, 0, 5, 3), num_vit=0, name="searched")
SEARCHED_ATTN = EfficientFormerConfig(widths=(16, 16, 32, 48), depths=(2, 1, 0, 3), num_vit=2, name="searched_vit")
TINY_V2 = EfficientFormerV2Config(widths=(16, 16, 32, 32), depths=(1, 1, 2, 2), num_vit=1,
                                  mlp_ratios=(4, 4, (4, 3), (3, 4)), name="tiny_v2", key_dim=8, num_heads=2)


def _max_rel_diff(model, graph, inputs):
    reference = common.keras_predict(model, inputs)
    return float(np.abs(reference - common.keras_predict(graph, inputs)).max() / max(1.0, np.sqrt(np.mean(reference ** 2))))


def _avg_pool_minus_x(x, k):
    """Reference pool mixer, by loops: mean over the in-bounds k x k window minus the centre."""
    out = np.empty_like(x)
    r = k // 2
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            window = x[:, max(0, i - r):i + r + 1, max(0, j - r):j + r + 1, :]
            out[:, i, j, :] = window.mean(axis=(1, 2)) - x[:, i, j, :]
    return out


@pytest.mark.parametrize("shape,k", [((2, 5, 7, 4), 3), ((1, 1, 1, 3), 3), ((1, 2, 3, 2), 3), ((1, 6, 6, 2), 5)])
def test_pool_mixer_is_the_pool_mixer_residual(shape, k):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype("float32")
    pooled = np.asarray(export_graph.PoolMixer(k)(x))  # no scale: the average pool itself
    np.testing.assert_allclose(pooled - x, _avg_pool_minus_x(x, k), atol=1e-5)
    keras_pool = np.asarray(keras.layers.AveragePooling2D(k, strides=1, padding="same")(x))
    np.testing.assert_allclose(pooled, keras_pool, atol=1e-5)
    scale = rng.uniform(0.05, 0.9, shape[-1]).astype("float32")  # folded: x + s * (pool(x) - x)
    folded = np.asarray(export_graph.PoolMixer(k, scale)(x))
    np.testing.assert_allclose(folded, x + scale * _avg_pool_minus_x(x, k), atol=1e-5)


def _model(config, input_shape, seed=3):
    cls = EfficientFormerV2 if isinstance(config, EfficientFormerV2Config) else ef_keras.EfficientFormer
    return testing.randomize_weights(cls(config, input_shape=input_shape, classes=10), seed=seed)


@pytest.mark.parametrize("config,input_shape", [(TINY, TINY_INPUT), ("l1", (224, 224, 3)), (SEARCHED, (64, 96, 3)),
                                                (SEARCHED_ATTN, (96, 64, 3)), (TINY_V2, (64, 64, 3))])
def test_export_graph_equals_model(config, input_shape):
    model = _model(config, input_shape)
    inputs = verify.sample_inputs(common.input_spec(model), count=2)
    blocks = [layer for layer in model.layers if isinstance(layer, tuple(export_graph.FOLD_TARGETS))]
    pool_mixers = sum(isinstance(layer, ef_keras.layers.Meta4D) for layer in blocks)
    scales = sum(sum(hasattr(layer, attr) for attr in ("ls1", "ls2")) for layer in blocks)
    for int8 in (False, True):
        graph, outcome = export_graph.export_model(model, int8=int8)
        assert _max_rel_diff(model, graph, inputs) <= 1e-5
        assert len(outcome) == scales
        unfolded = [name for name, what in outcome.items() if what.startswith("not folded")]
        assert len(unfolded) == (0 if int8 else pool_mixers)  # float: only the pool mixers' ls1, named
        assert all(name.endswith(".ls1") for name in unfolded)
        assert not [layer for layer in graph.layers if isinstance(layer, tuple(export_graph.FOLD_TARGETS))
                    and layer in blocks]  # every block replaced by its folded clone
    unfolded_graph, outcome = export_graph.export_model(model, fold_scales=False, int8=True)
    assert outcome == {} and _max_rel_diff(model, unfolded_graph, inputs) <= 1e-5
    assert export_graph.export_model(model, fold_scales=False) == (model, {})


def test_folding_leaves_the_model_alone():
    model = _model(TINY, TINY_INPUT)
    before = [np.array(w) for w in model.get_weights()]
    export_graph.export_model(model, int8=True)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["l3", "l7", "s0", "l"])
def test_export_graph_equals_named_variant(variant):
    model = testing.randomize_weights(ef_keras.registry.build_model(variant), seed=3)
    inputs = verify.sample_inputs(common.input_spec(model), count=2)
    for int8 in (False, True):
        assert _max_rel_diff(model, export_graph.export_model(model, int8=int8)[0], inputs) <= 1e-5


def test_backbone_and_other_models():
    backbone = testing.randomize_weights(ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, include_top=False))
    inputs = verify.sample_inputs(common.input_spec(backbone), count=2)
    assert _max_rel_diff(backbone, export_graph.export_model(backbone, int8=True)[0], inputs) <= 1e-5
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    assert export_graph.export_model(plain, int8=True) == (plain, {})


def test_gelu_forms():
    x = np.linspace(-6, 6, 2001).astype("float32")
    exact = np.asarray(keras.activations.gelu(x, approximate=False))
    np.testing.assert_allclose(np.asarray(export_graph.gelu(x)), exact, atol=1e-6)
    np.testing.assert_allclose(np.asarray(export_graph.gelu(x, "tanh")),
                               np.asarray(keras.activations.gelu(x, approximate=True)), atol=1e-5)
    sigmoid_error = np.abs(np.asarray(export_graph.gelu(x, "sigmoid")) - exact).max()
    assert 1e-3 < sigmoid_error < 0.03  # x * sigmoid(1.702 x) is a coarse approximation
    with pytest.raises(ValueError, match="GELU form"):
        export_graph.gelu(x, "relu")


@pytest.mark.parametrize("target", ["tflite", "onnx"])
def test_conversions_report_folding_and_the_ops_it_removed(target, tmp_path):
    """ONNX keeps a Mul per layer scale unless folded; TFLite's converter already fuses a constant MUL after CONV/FC.

    The int8 graph's SUBs removed by folding are in tests/test_deploy_int8.py.
    """
    model = _model(SEARCHED_ATTN, (96, 64, 3))
    convert = {"tflite": deploy.to_tflite, "onnx": deploy.to_onnx}[target]
    folded = convert(model, str(tmp_path / f"f.{target}"))
    unfolded = convert(model, str(tmp_path / f"u.{target}"), fold_scales=False)
    graph = folded["export_graph"]
    assert graph["ops_removed"] == report_lib.census_delta(unfolded["op_census"], folded["op_census"])
    assert graph["ops_removed"] == ({} if target == "tflite" else {"Mul": graph["folded"]})
    assert graph["folded"] + sum(map(len, graph["left_unfolded"].values())) == graph["scales"] == 12
    assert graph["left_unfolded"] == {export_graph.POOL_MIXER_REASON: [  # named, never a failure
        f"stage{s}_block{b}.ls1" for s, b in ((0, 0), (0, 1), (1, 0), (3, 0))]}
    assert folded["verification"]["max_rel_diff"] <= 1e-4
    assert unfolded["export_graph"]["scales"] == 0
