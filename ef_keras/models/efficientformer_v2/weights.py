"""EfficientFormerV2 checkpoints: the key map only (reading, checking and assigning are `ef_keras.weights`).

`official_to_timm_key` renames the official snap-research repository's keys to timm's, and
`weight_map` walks a built model's V2 block plan and lists, for every timm key, the Keras
variable it fills and its transform (conv kernels to HWIO, depthwise kernels to (kh, kw, C, 1)).
"""

from __future__ import annotations

from ef_keras.models.plan import Block
from ef_keras.weights import (OfficialLayout, Target, batch_norm_targets, bias_table_target, conv_targets,
                              head_targets, vector)

#: Keys only V2 checkpoints have (timm or official layout): the FFN's depthwise `mlp.mid`, talking
#: heads, local V, timm's ConvNorm stem; how a V2 checkpoint is recognised.
CHECKPOINT_MARKS = r"\.mlp\.mid(_norm)?\.|talking_head|v_local|^stem\.conv1\.conv\."
_INDEX_SUFFIX = "attention_bias_idxs"


# --------------------------------------------------------------------------- official -> timm
#: The official repository's names: ConvNorm pairs as `<name>.0` / `.1` (`proj.1` / `.2` after the
#: activation), the FFN's `fc1/norm1/mid/mid_norm/fc2/norm2`, layer scales `layer_scale_{1,2}`.
OFFICIAL_LAYOUT = OfficialLayout(
    stem={"0": "conv1.conv", "1": "conv1.bn", "3": "conv2.conv", "4": "conv2.bn"},
    downsample={"proj": "conv.conv", "conv": "conv.conv", "norm": "conv.bn", "bn": "conv.bn"},
    block_rules=(
        (r"^layer_scale_([12])$", r"ls\1.gamma"),
        (r"^mlp\.fc1\.", "mlp.fc1.conv."), (r"^mlp\.norm1\.", "mlp.fc1.bn."),
        (r"^mlp\.mid\.", "mlp.mid.conv."), (r"^mlp\.mid_norm\.", "mlp.mid.bn."),
        (r"^mlp\.fc2\.", "mlp.fc2.conv."), (r"^mlp\.norm2\.", "mlp.fc2.bn."),
        (r"^token_mixer\.(q|k|v|v_local|stride_conv)\.0\.", r"token_mixer.\1.conv."),
        (r"^token_mixer\.(q|k|v|v_local|stride_conv)\.1\.", r"token_mixer.\1.bn."),
        (r"^token_mixer\.proj\.1\.", "token_mixer.proj.conv."), (r"^token_mixer\.proj\.2\.", "token_mixer.proj.bn.")),
    downsample_attn_rules=(
        (r"^q\.local\.0\.", "q.local."), (r"^q\.proj\.0\.", "q.proj.conv."), (r"^q\.proj\.1\.", "q.proj.bn."),
        (r"^(k|v|v_local)\.0\.", r"\1.conv."), (r"^(k|v|v_local)\.1\.", r"\1.bn."),
        (r"^proj\.1\.", "proj.conv."), (r"^proj\.2\.", "proj.bn.")))
official_to_timm_key = OFFICIAL_LAYOUT.to_timm


def _conv_norm_targets(prefix, layer, name, depthwise=False):
    """timm ConvNorm `<prefix>.conv` / `<prefix>.bn` <- our `<name>_conv` / `<name>_bn` pair."""
    return {**conv_targets(f"{prefix}.conv", getattr(layer, f"{name}_conv"), depthwise),
            **batch_norm_targets(f"{prefix}.bn", getattr(layer, f"{name}_bn"))}


def _unit_targets(block: Block, layer) -> dict[str, Target]:
    p = block.reference_prefix
    t: dict[str, Target] = {}
    if block.kind == "v2_stem":
        t.update(conv_targets("stem.conv1.conv", layer.conv1))
        t.update(batch_norm_targets("stem.conv1.bn", layer.norm1))
        t.update(conv_targets("stem.conv2.conv", layer.conv2))
        t.update(batch_norm_targets("stem.conv2.bn", layer.norm2))
    elif block.kind in ("v2_downsample", "v2_attn_downsample"):
        t.update(conv_targets(f"{p}.conv.conv", layer.conv))
        t.update(batch_norm_targets(f"{p}.conv.bn", layer.norm))
        if block.kind == "v2_attn_downsample":
            a, ap = layer.attn, f"{p}.attn"
            t[f"{ap}.attention_biases"] = bias_table_target(a)
            t.update(conv_targets(f"{ap}.q.local", a.q_local, depthwise=True))
            t.update(_conv_norm_targets(f"{ap}.q.proj", a, "q_proj"))
            for name in ("k", "v", "proj"):
                t.update(_conv_norm_targets(f"{ap}.{name}", a, name))
            t.update(_conv_norm_targets(f"{ap}.v_local", a, "v_local", depthwise=True))
    elif block.kind in ("v2_ffn", "v2_attn_ffn"):
        mlp = layer.mlp
        t.update(conv_targets(f"{p}.mlp.fc1.conv", mlp.fc1))
        t.update(batch_norm_targets(f"{p}.mlp.fc1.bn", mlp.norm1))
        t.update(conv_targets(f"{p}.mlp.mid.conv", mlp.mid, depthwise=True))
        t.update(batch_norm_targets(f"{p}.mlp.mid.bn", mlp.mid_norm))
        t.update(conv_targets(f"{p}.mlp.fc2.conv", mlp.fc2))
        t.update(batch_norm_targets(f"{p}.mlp.fc2.bn", mlp.norm2))
        t[f"{p}.ls2.gamma"] = Target(layer.ls2.layer_scale, vector)
        if block.kind == "v2_attn_ffn":
            a, ap = layer.token_mixer, f"{p}.token_mixer"
            t[f"{p}.ls1.gamma"] = Target(layer.ls1.layer_scale, vector)
            t[f"{ap}.attention_biases"] = bias_table_target(a)
            for name in ("q", "k", "v", "proj"):
                t.update(_conv_norm_targets(f"{ap}.{name}", a, name))
            t.update(_conv_norm_targets(f"{ap}.v_local", a, "v_local", depthwise=True))
            if block.attn_stride:
                t.update(_conv_norm_targets(f"{ap}.stride_conv", a, "stride", depthwise=True))
            t.update(conv_targets(f"{ap}.talking_head1", a.talking_head1))
            t.update(conv_targets(f"{ap}.talking_head2", a.talking_head2))
    return t


def weight_map(model, include_head: bool = True) -> dict[str, Target]:
    """timm key -> Keras variable for every weight of an EfficientFormerV2 model, from its block plan."""
    targets: dict[str, Target] = {}
    for block in model.config.blocks(model.image_shape[:2]):
        if block.kind == "v2_head":
            targets.update(batch_norm_targets("norm", model.get_layer("norm")))
        else:
            targets.update(_unit_targets(block, model.get_layer(block.name)))
    return {**targets, **(head_targets(model) if include_head else {})}


def bias_index_keys(model) -> dict:
    """timm key of every attention's `attention_bias_idxs` buffer -> the index our layer rebuilt.

    timm keeps them out of its state dict (non-persistent buffers); the official checkpoints have them.
    """
    out = {}
    for block in model.config.blocks(model.image_shape[:2]):
        if block.kind == "v2_attn_ffn":
            out[f"{block.reference_prefix}.token_mixer.{_INDEX_SUFFIX}"] = \
                model.get_layer(block.name).token_mixer.bias_index
        elif block.kind == "v2_attn_downsample":
            out[f"{block.reference_prefix}.attn.{_INDEX_SUFFIX}"] = model.get_layer(block.name).attn.bias_index
    return out
