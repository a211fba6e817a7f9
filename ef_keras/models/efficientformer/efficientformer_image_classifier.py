"""EfficientFormer (V1) image classifier for keras-hub: the backbone, average pooling and the family's heads.

Example:
    >>> from ef_keras import EfficientFormerImageClassifier
    >>> classifier = EfficientFormerImageClassifier.from_preset("efficientformer_l1_imagenet")  # timm\'s weights
    >>> classifier.predict(images)  # (B, H, W, 3) RGB in [0, 255], any size: resized, cropped, normalised
"""

import keras

from ef_keras.models.hub import HubImageClassifier
from ef_keras.models.efficientformer import efficientformer_image_classifier_preprocessor as preprocessor
from ef_keras.models.efficientformer.efficientformer_backbone import EfficientFormerBackbone


@keras.saving.register_keras_serializable(package="ef_keras")
class EfficientFormerImageClassifier(HubImageClassifier):
    """Arguments as `ef_keras.models.hub.HubImageClassifier`."""

    family = "v1"
    backbone_cls = EfficientFormerBackbone
    preprocessor_cls = preprocessor.EfficientFormerImageClassifierPreprocessor
