"""Input normalisation for the published EfficientFormer weights (ImageNet mean/std, RGB)."""

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_input(images):
    """RGB images with values in [0, 255] (NHWC) -> float32 normalised by ImageNet mean/std.

    Equivalent to scale 1/(255·std) and offset −mean/std per channel.
    """
    x = np.asarray(images, dtype="float32") / 255.0
    return (x - np.asarray(IMAGENET_MEAN, "float32")) / np.asarray(IMAGENET_STD, "float32")
