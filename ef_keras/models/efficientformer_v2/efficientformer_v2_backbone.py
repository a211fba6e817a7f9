"""EfficientFormerV2 as a keras-hub `FeaturePyramidBackbone`: the family model's own graph (`ef_keras.models.hub`).

Example:
    >>> from ef_keras import EfficientFormerV2Backbone
    >>> backbone = EfficientFormerV2Backbone("s0", image_shape=(224, 224, 3))
    >>> features = keras.Model(backbone.inputs, backbone.pyramid_outputs)  # {"P2": ..., "P5": ...}
"""

import keras

from ef_keras.models.efficientformer_v2.efficientformer_v2_presets import backbone_presets
from ef_keras.models.hub import HubBackbone, preset_utils


@keras.saving.register_keras_serializable(package="ef_keras")
class EfficientFormerV2Backbone(HubBackbone):
    """EfficientFormerV2 backbone; arguments as `ef_keras.models.hub.HubBackbone` (default config "s0")."""

    family = "v2"
    default_config = "s0"


preset_utils.register_presets(backbone_presets, EfficientFormerV2Backbone)
