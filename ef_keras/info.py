"""Parameter and multiply-accumulate counts of a model of any family (`ef_keras.model_info`).

Each family states its conventions in its `macs` module: how GMACs are counted (analytically,
from the block plan, no build) and which layers its "folded" parameter count leaves out (what
folds into the convolutions at inference: V1's paper count drops BatchNorm and the layer scales,
V2's `params_no_bn` BatchNorm). The counting itself is the same for every family and lives here.
"""

from __future__ import annotations

import numpy as np

from ef_keras.registry import build_model, family_of


def count_params(model) -> dict[str, int]:
    """`params_all` (trainable, as timm) and the family's folded count (its `folded_params_key`)."""
    family = family_of(model)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    folded = int(sum(np.prod(w.shape) for layer in model._flatten_layers(include_self=False, recursive=True)
                     if isinstance(layer, family.folded_layers) for w in layer.trainable_weights))
    return {"params_all": trainable, family.folded_params_key: trainable - folded}


def model_info(model_or_config, image_size=(224, 224)) -> dict:
    """Parameters (both conventions) and GMACs of a model, or of a config / variant name (builds it).

    Returns {"name", "params_all", "params_paper", "gmacs"}; families whose folded count is not
    the paper's (V2: `params_no_bn`) add it under its own key and report it as `params_paper`
    too (the key the tools read).
    """
    model = model_or_config
    if not hasattr(model_or_config, "trainable_weights"):
        model = build_model(model_or_config, input_shape=(*image_size, 3))
    family = family_of(model)
    params = count_params(model)
    return {"name": model.config.name, **params, "params_paper": params[family.folded_params_key],
            "gmacs": family.gmacs(model.config, tuple(model.image_shape[:2]), model.classes, model.distillation)}
