"""Multiply-accumulate counts of EfficientFormerV2 architectures, and their parameter convention.

Parameters (counted by `ef_keras.info.model_info` with this family's rule), two conventions:
  * `params_all`: every trainable parameter, as timm counts them (BN gamma/beta included,
    running statistics excluded): S0 3,600,256 · S1 6,185,560 · S2 12,710,112 · L 26,322,288,
    equal to timm's own counts (recorded by the fixture generator from the real timm models).
  * `params_no_bn`: `params_all` without BatchNorm gamma/beta (what folds into the preceding
    convs at inference, `FOLDED_LAYERS`): S0 3,550,944 · S1 6,114,648 · S2 12,588,320 · L 26,125,864. The
    README's 3.535 / 6.092 / 12.551 / 26.069 M are 16-57 k lower; no combination of
    parameter kinds found so far (BN, layer scales, bias tables, conv or depthwise biases,
    talking heads, the distillation head) reproduces all four, so this module does not
    claim to reproduce them. `model_info` also returns it as `params_paper`, the key V1's
    consumers read.

GMACs (`gmacs`), counted over the block plan: every convolution (depthwise included) and
every linear as weights × output positions, bias not counted; the talking heads as the 1×1
convs they are; both attention matmuls (q·kᵀ and attn·v); both classifier heads.
BatchNorm, GELU, softmax, the bilinear upsampling, residual adds and pooling are free. This
rule gives 0.396 / 0.652 / 1.247 / 2.553 GMACs for S0 / S1 / S2 / L at 224, the published
0.40 / 0.65 / 1.25 / 2.56 (the README's 2.56 for L rounds 2.553 up; 0.396 / 0.652 / 1.247 /
2.553 are the three-decimal values the facts file quotes), computed analytically (no build).
"""

from __future__ import annotations

import keras

from ef_keras.models.efficientformer_v2.config import get_v2_config

#: What `params_no_bn` leaves out: it folds into the preceding convolutions at inference.
FOLDED_LAYERS = (keras.layers.BatchNormalization,)


def _conv(out_grid, cin, cout, k, groups=1):
    return out_grid[0] * out_grid[1] * cout * k * k * cin // groups


def _attention(queries, keys, heads, key_dim, val_dim):
    return heads * queries * keys * (key_dim + val_dim)


def gmacs(config, image_size=(224, 224), classes=1000, distillation=True) -> float:
    """Multiply-accumulates (×1e9) of one image under the rule in the module docstring."""
    cfg = get_v2_config(config)
    macs = 0
    heads, kd, vd = cfg.num_heads, cfg.key_dim, cfg.attn_ratio * cfg.key_dim
    for b in cfg.blocks(tuple(image_size), classes):
        g, o = b.grid, b.out_grid
        if b.kind == "v2_stem":
            mid = tuple((n + 1) // 2 for n in g)
            macs += _conv(mid, 3, b.cout // 2, 3) + _conv(o, b.cout // 2, b.cout, 3)
        elif b.kind in ("v2_downsample", "v2_attn_downsample"):
            macs += _conv(o, b.cin, b.cout, 3)
            if b.kind == "v2_attn_downsample":
                dkd, dvd = cfg.downsample_key_dim, cfg.attn_ratio * cfg.downsample_key_dim
                kh, dh = heads * dkd, heads * dvd
                macs += (_conv(o, b.cin, b.cin, 3, groups=b.cin) + _conv(o, b.cin, kh, 1)  # local-global query
                         + _conv(g, b.cin, kh, 1) + _conv(g, b.cin, dh, 1)  # k, v
                         + _conv(o, dh, dh, 3, groups=dh)  # local v (stride 2)
                         + _attention(o[0] * o[1], g[0] * g[1], heads, dkd, dvd)
                         + _conv(o, dh, b.cout, 1))  # proj
        elif b.kind in ("v2_ffn", "v2_attn_ffn"):
            c, hidden = b.cout, int(b.cout * b.mlp_ratio)
            if b.kind == "v2_attn_ffn":
                a = b.attn_grid
                n = a[0] * a[1]
                kh, dh = heads * kd, heads * vd
                if b.attn_stride:
                    macs += _conv(a, c, c, 3, groups=c)
                macs += (2 * _conv(a, c, kh, 1) + _conv(a, c, dh, 1) + _conv(a, dh, dh, 3, groups=dh)
                         + _attention(n, n, heads, kd, vd) + 2 * _conv((n, n), heads, heads, 1)  # talking heads
                         + _conv(g, dh, c, 1))  # proj (after the upsampling: full grid)
            macs += _conv(g, c, hidden, 1) + _conv(g, hidden, hidden, 3, groups=hidden) + _conv(g, hidden, c, 1)
        elif b.kind == "v2_head":
            macs += (2 if distillation else 1) * b.cin * classes
    return macs / 1e9
