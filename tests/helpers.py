"""Shared test pieces: a tiny architecture per family, one weight randomiser, and the standard model checks.

`run_model_test` is keras-hub's `run_backbone_test` for our families: one call gives a model of any
family the checks every model must pass. Weights come from `deploy.testing.randomize_weights`, the
project's one randomiser (a fresh model's 1e-5 layer scales would hide every block).
"""

import inspect

import keras
import numpy as np

import ef_keras
from deploy.testing import randomize_weights
from ef_keras.models.efficientformer.config import EfficientFormerConfig
from ef_keras.models.efficientformer_v2.config import EfficientFormerV2Config

TINY = EfficientFormerConfig(widths=(16, 32, 48, 64), depths=(1, 1, 1, 2), num_vit=1, name="tiny")
TINY_INPUT = (64, 64, 3)
TINY_V2 = EfficientFormerV2Config(widths=(16, 16, 32, 32), depths=(1, 1, 2, 2), num_vit=1,
                                  mlp_ratios=((4,), (4,), (4, 3), (3, 4)), name="tiny_v2")
#: One tiny architecture per family (by the family's registry name); each builds and runs at TINY_INPUT in ~1 s.
TINY_CONFIGS = {"v1": TINY, "v2": TINY_V2}
#: Constructor arguments that are not configuration (inputs to the constructor only).
NOT_CONFIG = {"self", "kwargs", "weights", "input_tensor"}


def images(shape, n=2, seed=0):
    """`n` seeded random images of `shape` (H, W, 3)."""
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype("float32")


def tiny_model(family: str, **kwargs):
    """The family's tiny architecture as a 10-class model at TINY_INPUT (`kwargs` as the constructor's)."""
    return ef_keras.registry.build_model(TINY_CONFIGS[family], **{"input_shape": TINY_INPUT, "classes": 10, **kwargs})


def assert_config_complete(cls, config):
    """Every constructor argument of `cls` is a key of `config` (its `get_config()`)."""
    missing = sorted(set(inspect.signature(cls.__init__).parameters) - NOT_CONFIG - set(config))
    assert not missing, f"{cls.__name__}.get_config() lacks constructor argument(s) {missing}"


def run_model_test(build, tmp_path=None, round_trips=True):
    """The standard checks of one model of any family; `build(**kwargs)` makes it.

    - it builds, and a forward pass has the shape its `classes` asks for, with finite values;
    - `get_config()` lists every constructor argument of the model and of each of its ef_keras
      layers (a key missing from `get_config` fails here, where comparing a clone's config with the
      original's would miss it on both sides);
    - with `round_trips` (and `tmp_path`): the `.keras` file gives back the same class, config and
      outputs, and the timm-layout checkpoint it exports loads into a differently randomised copy
      with the same outputs.
    """
    model = randomize_weights(build())
    x = images(model.input_shape[1:])
    y = model.predict(x, verbose=0)
    assert y.shape == (len(x), model.classes) and np.isfinite(y).all()
    assert_config_complete(type(model), model.get_config())
    layers = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
              if keras.saving.get_registered_name(type(layer)).startswith("ef_keras>")]
    assert layers, "the model should be made of ef_keras layers"
    for layer in layers:
        assert_config_complete(type(layer), layer.get_config())
    if not round_trips:
        return model
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded) is type(model) and loaded.config == model.config
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), y)
    ef_keras.save_checkpoint(model, tmp_path / "m.safetensors")
    other = randomize_weights(build(), seed=1)
    assert not np.allclose(other.predict(x, verbose=0), y)
    ef_keras.load_weights_from_checkpoint(other, str(tmp_path / "m.safetensors"))
    np.testing.assert_array_equal(other.predict(x, verbose=0), y)
    return model


#: The supernet of the strategy tests: one block per stage, so four MetaPaths.
SUPERNET_WIDTHS, SUPERNET_MIN_WIDTHS, SUPERNET_DEPTHS = (16, 16, 32, 32), (16, 16, 16, 16), (1, 1, 1, 1)
#: Three of its children (widths, choices): the largest, the smallest, and one with 4D, identity and 3D paths.
SUPERNET_CHILDREN = [((16, 16, 32, 32), (0, 0, 0, 0)), ((16, 16, 16, 16), (0, 2, 1, 1)), ((16, 16, 32, 16), (0, 0, 2, 1))]


def supernet_children_logits(supernet, seed=0):
    """What a trained supernet computes: the logits of `SUPERNET_CHILDREN` on 8 seeded images (batch statistics).

    Strategy tests compare these, not raw weights: a conv bias before a BatchNorm has a gradient
    of 0 up to rounding, which Adam scales up to steps of the learning rate, so such weights
    differ by ~1e-3 between runs that compute the same function to ~1e-6.
    """
    x = np.random.default_rng(seed).uniform(-1, 1, (8, supernet.image_size, supernet.image_size, 3)).astype("float32")
    return [supernet.forward(x, widths, choices, training=True).numpy() for widths, choices in SUPERNET_CHILDREN]
