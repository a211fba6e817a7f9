"""EfficientFormerV2 image classifier for keras-hub: the backbone, average pooling and the family's heads.

Example:
    >>> from ef_keras import EfficientFormerV2ImageClassifier
    >>> classifier = EfficientFormerV2ImageClassifier.from_preset("efficientformerv2_s0_imagenet")  # timm\'s weights
    >>> classifier.predict(images)  # (B, H, W, 3) RGB in [0, 255], any size: resized, cropped, normalised
"""

import keras

from ef_keras.models.hub import HubImageClassifier
from ef_keras.models.efficientformer_v2 import efficientformer_v2_image_classifier_preprocessor as preprocessor
from ef_keras.models.efficientformer_v2.efficientformer_v2_backbone import EfficientFormerV2Backbone


@keras.saving.register_keras_serializable(package="ef_keras")
class EfficientFormerV2ImageClassifier(HubImageClassifier):
    """Arguments as `ef_keras.models.hub.HubImageClassifier`."""

    family = "v2"
    backbone_cls = EfficientFormerV2Backbone
    preprocessor_cls = preprocessor.EfficientFormerV2ImageClassifierPreprocessor
