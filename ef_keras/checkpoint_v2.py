"""Importing PyTorch EfficientFormerV2 checkpoints (official snap-research or timm layout).

Same contract as `ef_keras.checkpoint` for V1, and it reuses that module's file readers
and transforms: `official_v2_to_timm_key` renames the official repository's keys to
timm's, `keras_targets_v2` walks the model's V2 block plan and lists, for every timm key,
the Keras variable it fills and the transform it needs; loading checks every key and
shape first and assigns nothing unless everything matches.

A checkpoint of the other family (V1 given to a V2 model) is refused with an error that
names the family detected from its keys (`detect_family`).
"""

from __future__ import annotations

import re

import numpy as np

from ef_keras.checkpoint import (CheckpointError, Target, _conv, _linear, _same, _vector, checked_value,
                                 read_state_dict)
from ef_keras.plan import Block

_IGNORED_SUFFIXES = ("num_batches_tracked",)
_INDEX_SUFFIX = "attention_bias_idxs"

FAMILY_V1 = "EfficientFormer (V1)"
FAMILY_V2 = "EfficientFormerV2"


def detect_family(keys) -> str | None:
    """FAMILY_V1, FAMILY_V2 or None, from a state dict's key names (timm or official layout).

    V2 marks: the FFN's depthwise `mlp.mid`, talking heads, `v_local`, timm's `stem.conv1.conv`.
    V1 marks: the 3D blocks' `token_mixer.qkv`, or conv-BN MLPs without a `mlp.mid`.
    """
    keys = list(keys)
    if any(re.search(r"\.mlp\.mid(_norm)?\.|talking_head|v_local|^stem\.conv1\.conv\.", k) for k in keys):
        return FAMILY_V2
    if any(re.search(r"token_mixer\.qkv\.|\.mlp\.fc1\.", k) for k in keys):
        return FAMILY_V1
    return None


# --------------------------------------------------------------------------- official -> timm
_OFFICIAL_STEM = {"0": "conv1.conv", "1": "conv1.bn", "3": "conv2.conv", "4": "conv2.bn"}
_OFFICIAL_BLOCK_NETWORK = {0: 0, 2: 1, 4: 2, 6: 3}
_OFFICIAL_EMBED_NETWORK = {1: 1, 3: 2, 5: 3}
_OFFICIAL_BLOCK_RENAMES = [
    (r"^layer_scale_([12])$", r"ls\1.gamma"),
    (r"^mlp\.fc1\.", "mlp.fc1.conv."), (r"^mlp\.norm1\.", "mlp.fc1.bn."),
    (r"^mlp\.mid\.", "mlp.mid.conv."), (r"^mlp\.mid_norm\.", "mlp.mid.bn."),
    (r"^mlp\.fc2\.", "mlp.fc2.conv."), (r"^mlp\.norm2\.", "mlp.fc2.bn."),
    (r"^token_mixer\.(q|k|v|v_local|stride_conv)\.0\.", r"token_mixer.\1.conv."),
    (r"^token_mixer\.(q|k|v|v_local|stride_conv)\.1\.", r"token_mixer.\1.bn."),
    (r"^token_mixer\.proj\.1\.", "token_mixer.proj.conv."), (r"^token_mixer\.proj\.2\.", "token_mixer.proj.bn."),
]
_OFFICIAL_ATTN_DOWN_RENAMES = [
    (r"^q\.local\.0\.", "q.local."), (r"^q\.proj\.0\.", "q.proj.conv."), (r"^q\.proj\.1\.", "q.proj.bn."),
    (r"^(k|v|v_local)\.0\.", r"\1.conv."), (r"^(k|v|v_local)\.1\.", r"\1.bn."),
    (r"^proj\.1\.", "proj.conv."), (r"^proj\.2\.", "proj.bn."),
]


def _rename(rest, rules):
    for pattern, repl in rules:
        new = re.sub(pattern, repl, rest)
        if new != rest:
            return new
    return rest


def official_v2_to_timm_key(key: str) -> str:
    """Renames one official-repository V2 key to timm's layout (identity for timm keys)."""
    m = re.match(r"patch_embed\.(\d)\.(.*)", key)
    if m and m.group(1) in _OFFICIAL_STEM:
        return f"stem.{_OFFICIAL_STEM[m.group(1)]}.{m.group(2)}"
    m = re.match(r"network\.(\d+)\.(proj|norm|conv|bn)\.(.*)", key)
    if m and int(m.group(1)) in _OFFICIAL_EMBED_NETWORK:
        part = "conv" if m.group(2) in ("proj", "conv") else "bn"
        return f"stages.{_OFFICIAL_EMBED_NETWORK[int(m.group(1))]}.downsample.conv.{part}.{m.group(3)}"
    m = re.match(r"network\.(\d+)\.attn\.(.*)", key)
    if m and int(m.group(1)) in _OFFICIAL_EMBED_NETWORK:
        rest = _rename(m.group(2), _OFFICIAL_ATTN_DOWN_RENAMES)
        return f"stages.{_OFFICIAL_EMBED_NETWORK[int(m.group(1))]}.downsample.attn.{rest}"
    m = re.match(r"network\.(\d+)\.(\d+)\.(.*)", key)
    if m and int(m.group(1)) in _OFFICIAL_BLOCK_NETWORK:
        rest = _rename(m.group(3), _OFFICIAL_BLOCK_RENAMES)
        return f"stages.{_OFFICIAL_BLOCK_NETWORK[int(m.group(1))]}.blocks.{m.group(2)}.{rest}"
    if key.startswith("dist_head."):
        return "head_dist." + key[len("dist_head."):]
    return key


# --------------------------------------------------------------------------- timm key -> Keras variable
def _dw(w):  # PyTorch depthwise (C, 1, kh, kw) -> Keras DepthwiseConv2D (kh, kw, C, 1)
    return np.transpose(w, (2, 3, 0, 1))


def _conv_t(prefix, conv, depthwise=False):
    return {f"{prefix}.weight": Target(conv.kernel, _dw if depthwise else _conv), f"{prefix}.bias": Target(conv.bias, _same)}


def _bn_t(prefix, bn):
    return {f"{prefix}.weight": Target(bn.gamma, _same), f"{prefix}.bias": Target(bn.beta, _same),
            f"{prefix}.running_mean": Target(bn.moving_mean, _same),
            f"{prefix}.running_var": Target(bn.moving_variance, _same)}


def _conv_bn_t(prefix, layer, name, depthwise=False):
    """timm ConvNorm `<prefix>.conv` / `<prefix>.bn` <- our `<name>_conv` / `<name>_bn` pair."""
    return {**_conv_t(f"{prefix}.conv", getattr(layer, f"{name}_conv"), depthwise),
            **_bn_t(f"{prefix}.bn", getattr(layer, f"{name}_bn"))}


def _unit_targets(block: Block, layer) -> dict[str, Target]:
    p = block.reference_prefix
    t: dict[str, Target] = {}
    if block.kind == "v2_stem":
        t.update(_conv_t("stem.conv1.conv", layer.conv1))
        t.update(_bn_t("stem.conv1.bn", layer.norm1))
        t.update(_conv_t("stem.conv2.conv", layer.conv2))
        t.update(_bn_t("stem.conv2.bn", layer.norm2))
    elif block.kind in ("v2_downsample", "v2_attn_downsample"):
        t.update(_conv_t(f"{p}.conv.conv", layer.conv))
        t.update(_bn_t(f"{p}.conv.bn", layer.norm))
        if block.kind == "v2_attn_downsample":
            a, ap = layer.attn, f"{p}.attn"
            t[f"{ap}.attention_biases"] = Target(a.attention_biases, _same)
            t.update(_conv_t(f"{ap}.q.local", a.q_local, depthwise=True))
            t.update(_conv_bn_t(f"{ap}.q.proj", a, "q_proj"))
            for name in ("k", "v", "proj"):
                t.update(_conv_bn_t(f"{ap}.{name}", a, name))
            t.update(_conv_bn_t(f"{ap}.v_local", a, "v_local", depthwise=True))
    elif block.kind in ("v2_ffn", "v2_attn_ffn"):
        mlp = layer.mlp
        t.update(_conv_t(f"{p}.mlp.fc1.conv", mlp.fc1))
        t.update(_bn_t(f"{p}.mlp.fc1.bn", mlp.norm1))
        t.update(_conv_t(f"{p}.mlp.mid.conv", mlp.mid, depthwise=True))
        t.update(_bn_t(f"{p}.mlp.mid.bn", mlp.mid_norm))
        t.update(_conv_t(f"{p}.mlp.fc2.conv", mlp.fc2))
        t.update(_bn_t(f"{p}.mlp.fc2.bn", mlp.norm2))
        t[f"{p}.ls2.gamma"] = Target(layer.ls2.layer_scale, _vector)
        if block.kind == "v2_attn_ffn":
            a, ap = layer.token_mixer, f"{p}.token_mixer"
            t[f"{p}.ls1.gamma"] = Target(layer.ls1.layer_scale, _vector)
            t[f"{ap}.attention_biases"] = Target(a.attention_biases, _same)
            for name in ("q", "k", "v", "proj"):
                t.update(_conv_bn_t(f"{ap}.{name}", a, name))
            t.update(_conv_bn_t(f"{ap}.v_local", a, "v_local", depthwise=True))
            if block.attn_stride:
                t.update(_conv_bn_t(f"{ap}.stride_conv", a, "stride", depthwise=True))
            t.update(_conv_t(f"{ap}.talking_head1", a.talking_head1))
            t.update(_conv_t(f"{ap}.talking_head2", a.talking_head2))
    return t


def keras_targets_v2(model, include_head: bool = True) -> dict[str, Target]:
    """timm key -> Keras variable for every weight of an EfficientFormerV2 model, from its block plan."""
    targets: dict[str, Target] = {}
    names = {layer.name for layer in model.layers}
    for block in model.config.blocks(model.image_shape[:2]):
        if block.kind == "v2_head":
            targets.update(_bn_t("norm", model.get_layer("norm")))
            continue
        targets.update(_unit_targets(block, model.get_layer(block.name)))
    if include_head:
        for name in ("head", "head_dist"):
            if name in names:
                dense = model.get_layer(name)
                targets[f"{name}.weight"] = Target(dense.kernel, _linear)
                targets[f"{name}.bias"] = Target(dense.bias, _same)
    return targets


def _bias_indices(model) -> dict[str, np.ndarray]:
    """timm key prefix of every attention -> the relative-position index our layer rebuilt."""
    out = {}
    for block in model.config.blocks(model.image_shape[:2]):
        if block.kind == "v2_attn_ffn":
            out[f"{block.reference_prefix}.token_mixer.{_INDEX_SUFFIX}"] = \
                model.get_layer(block.name).token_mixer.bias_index
        elif block.kind == "v2_attn_downsample":
            out[f"{block.reference_prefix}.attn.{_INDEX_SUFFIX}"] = model.get_layer(block.name).attn.bias_index
    return out


# --------------------------------------------------------------------------- loading
def load_v2_state_dict(model, state_dict, skip_head: bool = False, source: str = "checkpoint"):
    """Checks every key and shape, then assigns all weights (or none).

    Args:
        skip_head: ignore the checkpoint's `head`/`head_dist` (fine-tuning to new classes).
    """
    family = detect_family(state_dict)
    if family == FAMILY_V1:
        raise CheckpointError(
            f"{source} is an {family} checkpoint (its keys have V1's pooling/attention blocks), but "
            f"{model.name} is an EfficientFormerV2; load it into ef_keras.EfficientFormer('l1'|'l3'|'l7') instead")
    state = {official_v2_to_timm_key(k): np.asarray(v) for k, v in state_dict.items()}
    has_head = any(layer.name == "head" for layer in model.layers)
    targets = keras_targets_v2(model, include_head=has_head and not skip_head)
    indices = _bias_indices(model)
    unexpected = [k for k in state if k not in targets and k not in indices
                  and not k.endswith(_IGNORED_SUFFIXES)
                  and not (re.match(r"head(_dist)?\.", k) and (skip_head or not has_head))]
    missing = [k for k in targets if k not in state]
    if missing or unexpected:
        cfg = model.config
        raise CheckpointError(
            f"{source} does not match {model.name} (widths {list(cfg.widths)}, depths {list(cfg.depths)}, "
            f"num_vit {cfg.num_vit}): "
            + "; ".join(part for part in (
                f"{len(missing)} missing key(s), e.g. {missing[:3]}" if missing else "",
                f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}" if unexpected else "") if part)
            + ". Is it a checkpoint of another V2 variant or input size?")
    values = []
    for key, target in targets.items():
        value = target.transform(state[key])
        expected = tuple(target.variable.shape)
        values.append((target.variable, checked_value(source, key, state[key], value, expected, model.name, "V2 ")))
    for key, index in indices.items():
        if key in state and not np.array_equal(state[key], index):
            raise CheckpointError(f"{source}: {key} differs from the {index.shape} relative-position index this "
                                  "model builds; the checkpoint was made for another input size")
    for variable, value in values:
        variable.assign(value.astype(variable.dtype))
    return model


def load_v2_weights_from_checkpoint(model, path, skip_head: bool = False):
    """Loads an official or timm EfficientFormerV2 checkpoint (.safetensors / .pth / .pt) into `model`.

    Example:
        >>> model = ef_keras.EfficientFormerV2S0()
        >>> ef_keras.load_v2_weights_from_checkpoint(model, "efficientformerv2_s0.safetensors")
    """
    return load_v2_state_dict(model, read_state_dict(path), skip_head=skip_head, source=str(path))


def load_v2_imagenet_weights(model):
    """Downloads (once, into the Keras cache) and loads timm's ImageNet weights of s0/s1/s2/l.

    The URL, file name and evaluation settings are the variant's row in `ef_keras.presets`
    (timm's `efficientformerv2_*.snap_dist_in1k`); the download is V1's downloader.
    """
    from ef_keras.checkpoint import load_imagenet_weights

    return load_imagenet_weights(model)


def is_v2_model(model) -> bool:
    """True for an `EfficientFormerV2` model (what `ef_keras.checkpoint` dispatches on)."""
    from ef_keras.config_v2 import EfficientFormerV2Config

    return isinstance(getattr(model, "config", None), EfficientFormerV2Config)


def save_v2_checkpoint(model, path) -> None:
    """Writes a V2 model's weights as `.safetensors` in timm's key layout and PyTorch tensor layout.

    timm's `efficientformerv2_*` loads the file with `strict=True` (BatchNorm step counters
    are written as 0; the bias indices are non-persistent buffers in timm, so none are
    written). The write is atomic.
    """
    import os

    from safetensors.numpy import save_file

    from ef_keras.output import writing

    inverse = {_conv: lambda w: np.transpose(w, (3, 2, 0, 1)), _dw: _dw, _linear: _linear, _vector: _same,
               _same: _same}
    has_head = any(layer.name == "head" for layer in model.layers)
    state = {key: np.ascontiguousarray(inverse[t.transform](np.asarray(t.variable.numpy())))
             for key, t in keras_targets_v2(model, include_head=has_head).items()}
    # BatchNorm's step counters: not weights, but timm's strict load expects them (eval ignores them).
    state.update({key.removesuffix("running_var") + "num_batches_tracked": np.array(0, np.int64)
                  for key in list(state) if key.endswith(".running_var")})
    with writing(os.fspath(path)) as tmp:
        save_file(state, tmp)
