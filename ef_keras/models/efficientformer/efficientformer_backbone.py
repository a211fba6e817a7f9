"""EfficientFormer (V1) as a keras-hub `FeaturePyramidBackbone`: the family model's own graph (`ef_keras.models.hub`).

Example:
    >>> from ef_keras import EfficientFormerBackbone
    >>> backbone = EfficientFormerBackbone("l1", image_shape=(224, 224, 3))
    >>> features = keras.Model(backbone.inputs, backbone.pyramid_outputs)  # {"P2": ..., "P5": ...}
"""

import keras

from ef_keras.models.efficientformer.efficientformer_presets import backbone_presets
from ef_keras.models.hub import HubBackbone, preset_utils


@keras.saving.register_keras_serializable(package="ef_keras")
class EfficientFormerBackbone(HubBackbone):
    """EfficientFormer (V1) backbone; arguments as `ef_keras.models.hub.HubBackbone` (default config "l1")."""

    family = "v1"
    default_config = "l1"


preset_utils.register_presets(backbone_presets, EfficientFormerBackbone)
