"""ef-keras: EfficientFormer (Li et al., NeurIPS 2022) for Keras 3 / TensorFlow.

    import ef_keras
    model = ef_keras.EfficientFormerL1(weights="imagenet")
    logits = model.predict(ef_keras.preprocess_input(images))
    print(ef_keras.decode_predictions(keras.ops.softmax(logits), top=3))
"""

from ef_keras import layers
from ef_keras.info import model_info
from ef_keras.models.base import ModelArgumentError
from ef_keras.models.config import ConfigError
from ef_keras.models.efficientformer import (VARIANTS, EfficientFormer, EfficientFormerConfig, EfficientFormerL1,
                                             EfficientFormerL3, EfficientFormerL7)
from ef_keras.models.efficientformer.config import get_config
from ef_keras.models.efficientformer_v2 import (V2_VARIANTS, EfficientFormerV2, EfficientFormerV2Config,
                                                EfficientFormerV2L, EfficientFormerV2S0, EfficientFormerV2S1,
                                                EfficientFormerV2S2)
from ef_keras.presets import PRESETS, Preset, PresetError, decode_predictions, get_preset
from ef_keras.preprocessing import IMAGENET_MEAN, IMAGENET_STD, eval_transform, preprocess_input
from ef_keras.registry import create_model, list_models
from ef_keras.weights import CheckpointError, load_weights_from_checkpoint, save_checkpoint

__version__ = "0.2.0"

__all__ = ["layers", "CheckpointError", "load_weights_from_checkpoint", "save_checkpoint",
           "create_model", "list_models", "VARIANTS", "ConfigError",
           "EfficientFormerConfig", "get_config", "model_info", "EfficientFormer", "EfficientFormerL1",
           "EfficientFormerL3", "EfficientFormerL7", "ModelArgumentError", "IMAGENET_MEAN", "IMAGENET_STD",
           "preprocess_input", "eval_transform", "PRESETS", "Preset", "PresetError", "decode_predictions",
           "get_preset"]

__all__ += ["V2_VARIANTS", "EfficientFormerV2Config", "EfficientFormerV2", "EfficientFormerV2S0", "EfficientFormerV2S1",
            "EfficientFormerV2S2", "EfficientFormerV2L"]

#: keras-hub classes (need the `[dense]` extra): imported on first use, so `import ef_keras` needs no keras-hub.
#: Any one of them imports (and registers with Keras and keras-hub) all of them.
_HUB_CLASSES = {f"{family}{role}": f"ef_keras.models.{folder}.{module}_{suffix}"
                for family, folder, module in (("EfficientFormer", "efficientformer", "efficientformer"),
                                               ("EfficientFormerV2", "efficientformer_v2", "efficientformer_v2"))
                for role, suffix in (("Backbone", "backbone"), ("ImageConverter", "image_converter"),
                                     ("ImageClassifierPreprocessor", "image_classifier_preprocessor"),
                                     ("ImageClassifier", "image_classifier"))}


def __getattr__(name):
    if name not in _HUB_CLASSES:
        raise AttributeError(f"module 'ef_keras' has no attribute {name!r}")
    import importlib

    for module in _HUB_CLASSES.values():
        importlib.import_module(module)
    return getattr(importlib.import_module(_HUB_CLASSES[name]), name)
