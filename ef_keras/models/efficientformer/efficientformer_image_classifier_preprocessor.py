"""EfficientFormer (V1) classifier preprocessor for keras-hub (keras-hub's, with the family's image converter)."""

import keras

from ef_keras.models.hub import HubImageClassifierPreprocessor
from ef_keras.models.efficientformer.efficientformer_backbone import EfficientFormerBackbone
from ef_keras.models.efficientformer.efficientformer_image_converter import EfficientFormerImageConverter


@keras.saving.register_keras_serializable(package="ef_keras")
class EfficientFormerImageClassifierPreprocessor(HubImageClassifierPreprocessor):
    """`image_converter`: an `EfficientFormerImageConverter` (from_preset builds the preset's)."""

    family = "v1"
    backbone_cls = EfficientFormerBackbone
    image_converter_cls = EfficientFormerImageConverter
