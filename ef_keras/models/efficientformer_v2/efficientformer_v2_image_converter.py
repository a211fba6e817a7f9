"""EfficientFormerV2 image converter for keras-hub: the preset's resize, crop 0.95, bicubic and mean/std."""

import keras

from ef_keras.models.hub import HubImageConverter
from ef_keras.models.efficientformer_v2.efficientformer_v2_backbone import EfficientFormerV2Backbone


@keras.saving.register_keras_serializable(package="ef_keras")
class EfficientFormerV2ImageConverter(HubImageConverter):
    """Arguments as `ef_keras.models.hub.HubImageConverter`; `from_preset(name)` reads the preset's row."""

    family = "v2"
    backbone_cls = EfficientFormerV2Backbone
