"""EfficientFormer (V1) as a keras-hub `FeaturePyramidBackbone`: the family model's own graph (`ef_keras.models.hub`).

Example:
    >>> from ef_keras import EfficientFormerBackbone
    >>> backbone = EfficientFormerBackbone("l1", image_shape=(224, 224, 3))
    >>> features = keras.Model(backbone.inputs, backbone.pyramid_outputs)  # {"P2": ..., "P5": ...}
"""

import keras
from keras_hub.src.utils.preset_utils import register_presets

from ef_keras.models.hub import HubBackbone
from ef_keras.models.efficientformer.efficientformer_presets import backbone_presets


@keras.saving.register_keras_serializable(package="ef_keras")
class EfficientFormerBackbone(HubBackbone):
    """EfficientFormer (V1) backbone; arguments as `ef_keras.models.hub.HubBackbone` (default config "l1")."""

    family = "v1"
    default_config = "l1"


register_presets(backbone_presets, EfficientFormerBackbone)
