"""EfficientFormer (V1) checkpoints: the key map only (reading, checking and assigning are `ef_keras.weights`).

`official_to_timm_key` renames the official snap-research repository's keys to timm's, and
`weight_map` walks a built model's block plan and lists, for every timm key, the Keras variable
it fills and its transform (NCHW conv kernels to HWIO, Linear weights transposed).
"""

from __future__ import annotations

from ef_keras.weights import (OfficialLayout, Target, batch_norm_targets, bias_table_target, conv_targets,
                              head_targets, layer_norm_targets, linear_targets, vector)

#: Keys only V1 checkpoints have (the 3D blocks' fused qkv); how a V1 checkpoint is recognised.
CHECKPOINT_MARKS = r"token_mixer\.qkv\."

#: The official repository's names: stem `patch_embed.{0,1,3,4}`, downsampling `network.N.proj/norm`,
#: layer scales `layer_scale_{1,2}`; everything else as timm.
OFFICIAL_LAYOUT = OfficialLayout(stem={"0": "conv1", "1": "norm1", "3": "conv2", "4": "norm2"},
                                 downsample={"proj": "conv", "norm": "norm"},
                                 block_rules=((r"^layer_scale_([12])$", r"ls\1.gamma"),))
official_to_timm_key = OFFICIAL_LAYOUT.to_timm


# --------------------------------------------------------------------------- timm key -> Keras variable
def _scale_targets(prefix, block):
    return {f"{prefix}.ls1.gamma": Target(block.ls1.layer_scale, vector),
            f"{prefix}.ls2.gamma": Target(block.ls2.layer_scale, vector)}


def _stem_targets(prefix, stem):
    targets = {}
    for i in ("1", "2"):
        targets.update(conv_targets(f"{prefix}.conv{i}", getattr(stem, f"conv{i}")))
        targets.update(batch_norm_targets(f"{prefix}.norm{i}", getattr(stem, f"norm{i}")))
    return targets


def _downsample_targets(prefix, down):
    return {**conv_targets(f"{prefix}.conv", down.conv), **batch_norm_targets(f"{prefix}.norm", down.norm)}


def _meta4d_targets(prefix, block):
    return {**_scale_targets(prefix, block),
            **conv_targets(f"{prefix}.mlp.fc1", block.fc1), **batch_norm_targets(f"{prefix}.mlp.norm1", block.norm1),
            **conv_targets(f"{prefix}.mlp.fc2", block.fc2), **batch_norm_targets(f"{prefix}.mlp.norm2", block.norm2)}


def _meta3d_targets(prefix, block):
    attn = block.token_mixer
    return {**_scale_targets(prefix, block),
            **layer_norm_targets(f"{prefix}.norm1", block.norm1), **layer_norm_targets(f"{prefix}.norm2", block.norm2),
            **linear_targets(f"{prefix}.token_mixer.qkv", attn.qkv),
            **linear_targets(f"{prefix}.token_mixer.proj", attn.proj),
            f"{prefix}.token_mixer.attention_biases": bias_table_target(attn),
            **linear_targets(f"{prefix}.mlp.fc1", block.fc1), **linear_targets(f"{prefix}.mlp.fc2", block.fc2)}


#: Block-plan unit kind -> (timm key prefix, its Keras layer) -> targets. Flat has no weights.
_UNIT_TARGETS = {"stem": _stem_targets, "downsample": _downsample_targets, "meta4d": _meta4d_targets,
                 "meta3d": _meta3d_targets, "head": lambda prefix, norm: layer_norm_targets("norm", norm)}


def _plan(model):
    """The block plan of a built model (its config at its input size)."""
    return model.config.blocks(tuple(model.image_shape[:2]))


def weight_map(model, include_head: bool = True) -> dict[str, Target]:
    """timm key -> Keras variable for every weight of an EfficientFormer model, along its block plan."""
    targets: dict[str, Target] = {}
    for block in _plan(model):
        if block.kind in _UNIT_TARGETS:
            targets.update(_UNIT_TARGETS[block.kind](block.reference_prefix, model.get_layer(block.name)))
    return {**targets, **(head_targets(model) if include_head else {})}


def bias_index_keys(model) -> dict:
    """timm key of each 3D block's `attention_bias_idxs` buffer -> the index our layer rebuilt."""
    return {f"{b.reference_prefix}.token_mixer.attention_bias_idxs": model.get_layer(b.name).token_mixer.bias_index
            for b in _plan(model) if b.kind == "meta3d"}
