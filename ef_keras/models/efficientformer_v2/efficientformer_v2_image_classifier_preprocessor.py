"""EfficientFormerV2 classifier preprocessor for keras-hub (keras-hub's, with the family's image converter)."""

import keras

from ef_keras.models.hub import HubImageClassifierPreprocessor
from ef_keras.models.efficientformer_v2.efficientformer_v2_backbone import EfficientFormerV2Backbone
from ef_keras.models.efficientformer_v2.efficientformer_v2_image_converter import EfficientFormerV2ImageConverter


@keras.saving.register_keras_serializable(package="ef_keras")
class EfficientFormerV2ImageClassifierPreprocessor(HubImageClassifierPreprocessor):
    """`image_converter`: an `EfficientFormerV2ImageConverter` (from_preset builds the preset's)."""

    family = "v2"
    backbone_cls = EfficientFormerV2Backbone
    image_converter_cls = EfficientFormerV2ImageConverter
