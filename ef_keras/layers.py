"""The public layers of both families (`ef_keras.layers.Meta4D`, `ef_keras.layers.V2Block`, ...).

Like `keras_hub.layers`: one namespace for users, the definitions live with their family
(`ef_keras.models.efficientformer.layers`, `..._v2.layers`) and in the shared
`ef_keras.models.common_layers`.
"""

from ef_keras.models.common_layers import (BN_EPSILON, BN_MOMENTUM, LN_EPSILON, DropPath, LayerScale,
                                           attention_bias_index, drop_path_rates, gelu, resize_bias_table)
from ef_keras.models.efficientformer.layers import Attention, Downsample, Flat, Meta3D, Meta4D, Stem, TokensToMap
from ef_keras.models.efficientformer_v2.layers import (Attention4D, Attention4DDownsample, V2Block, V2Downsample, V2FFN,
                                                       V2Stem, downsample_bias_index, upsample_bilinear_2x)

__all__ = ["BN_EPSILON", "BN_MOMENTUM", "LN_EPSILON", "gelu", "LayerScale", "DropPath", "attention_bias_index",
           "drop_path_rates", "resize_bias_table", "Stem", "Downsample", "Meta4D", "Flat", "Attention", "Meta3D",
           "TokensToMap", "V2Stem", "V2FFN", "Attention4D", "Attention4DDownsample", "V2Downsample", "V2Block",
           "downsample_bias_index", "upsample_bilinear_2x"]
