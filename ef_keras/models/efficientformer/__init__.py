"""EfficientFormer (V1; Li et al., NeurIPS 2022): L1, L3, L7 and any searched architecture.

Importing the package registers the family and its variants with `ef_keras.registry` (the
keras-hub pattern): config, model class, block factory, GMAC count and checkpoint key map.
"""

from ef_keras.models.efficientformer import macs, weights
from ef_keras.models.efficientformer.config import VARIANTS, EfficientFormerConfig
from ef_keras.models.efficientformer.model import (EfficientFormer, EfficientFormerL1, EfficientFormerL3,
                                                   EfficientFormerL7, block_layer)
from ef_keras.registry import Family, register_family, register_model

FAMILY = register_family(Family(
    config_class=EfficientFormerConfig, model_class=EfficientFormer, block_layer=block_layer, gmacs=macs.gmacs,
    weight_map=weights.weight_map, official_to_timm_key=weights.official_to_timm_key,
    bias_index_keys=weights.bias_index_keys, bias_index_in_state_dict=True,
    checkpoint_marks=weights.CHECKPOINT_MARKS, folded_layers=macs.FOLDED_LAYERS))
for _name, _builder in (("l1", EfficientFormerL1), ("l3", EfficientFormerL3), ("l7", EfficientFormerL7)):
    register_model(_name, FAMILY, _builder, VARIANTS[_name])
