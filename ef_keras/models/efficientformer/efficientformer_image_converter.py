"""EfficientFormer (V1) image converter for keras-hub: the preset's resize, crop 0.95, bicubic and mean/std."""

import keras

from ef_keras.models.hub import HubImageConverter
from ef_keras.models.efficientformer.efficientformer_backbone import EfficientFormerBackbone


@keras.saving.register_keras_serializable(package="ef_keras")
class EfficientFormerImageConverter(HubImageConverter):
    """Arguments as `ef_keras.models.hub.HubImageConverter`; `from_preset(name)` reads the preset's row."""

    family = "v1"
    backbone_cls = EfficientFormerBackbone
