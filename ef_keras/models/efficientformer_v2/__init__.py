"""EfficientFormerV2 (Li et al., ICCV 2023): S0, S1, S2, L and any V2 architecture.

Importing the package registers the family and its variants with `ef_keras.registry` (the
keras-hub pattern): config, model class, block factory, GMAC count and checkpoint key map.
"""

from ef_keras.models.efficientformer_v2 import macs, weights
from ef_keras.models.efficientformer_v2.config import V2_VARIANTS, EfficientFormerV2Config
from ef_keras.models.efficientformer_v2.model import (EfficientFormerV2, EfficientFormerV2L, EfficientFormerV2S0,
                                                      EfficientFormerV2S1, EfficientFormerV2S2, block_layer)
from ef_keras.registry import Family, register_family, register_model

FAMILY = register_family(Family(
    config_class=EfficientFormerV2Config, model_class=EfficientFormerV2, block_layer=block_layer, gmacs=macs.gmacs,
    weight_map=weights.weight_map, official_to_timm_key=weights.official_to_timm_key,
    bias_index_keys=weights.bias_index_keys, bias_index_in_state_dict=False,  # timm: non-persistent buffers
    checkpoint_marks=weights.CHECKPOINT_MARKS, folded_layers=macs.FOLDED_LAYERS, folded_params_key="params_no_bn"))
for _name, _builder in (("s0", EfficientFormerV2S0), ("s1", EfficientFormerV2S1), ("s2", EfficientFormerV2S2),
                        ("l", EfficientFormerV2L)):
    register_model(_name, FAMILY, _builder, V2_VARIANTS[_name])
