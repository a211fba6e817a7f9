"""EfficientFormerV2 keras-hub presets: one per published timm weight, from `ef_keras.presets` (no copies)."""

from ef_keras.models.hub import hub_presets

#: keras-hub preset name -> {"metadata", "kaggle_handle"} (the handle is the timm repository "hf://timm/...").
backbone_presets = hub_presets("v2")
