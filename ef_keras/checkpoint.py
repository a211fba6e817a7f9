"""Importing PyTorch EfficientFormer checkpoints (official snap-research or timm layout).

The whole mapping lives here, apart from the model code: `official_to_timm_key` renames the
official repository's keys to timm's, and `keras_targets` lists, for a built model, every
timm key with the Keras variable it fills and the transform it needs (NCHW conv kernels to
HWIO, Linear weights transposed). Loading checks every key and shape first and assigns
nothing unless everything matches, so a failed load never leaves a half-loaded model.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from typing import Callable

import numpy as np

from ef_keras import layers as ef_layers
from ef_keras.errors import EfKerasError

#: Buffers that carry no weights: checked or ignored, never assigned.
_IGNORED_SUFFIXES = ("num_batches_tracked",)


class CheckpointError(EfKerasError):
    """A checkpoint that cannot be read or does not fit the model."""


# --------------------------------------------------------------------------- key layouts
_OFFICIAL_STEM = {"0": "conv1", "1": "norm1", "3": "conv2", "4": "norm2"}
_OFFICIAL_BLOCK_NETWORK = {0: 0, 2: 1, 4: 2, 6: 3}  # network.N (blocks) -> stage
_OFFICIAL_EMBED_NETWORK = {1: 1, 3: 2, 5: 3}  # network.N (patch embedding) -> stage


def official_to_timm_key(key: str) -> str:
    """Renames one official-repository key to timm's layout (identity for timm keys)."""
    m = re.match(r"patch_embed\.(\d)\.(.*)", key)
    if m and m.group(1) in _OFFICIAL_STEM:
        return f"stem.{_OFFICIAL_STEM[m.group(1)]}.{m.group(2)}"
    m = re.match(r"network\.(\d+)\.(proj|norm)\.(.*)", key)
    if m and int(m.group(1)) in _OFFICIAL_EMBED_NETWORK:
        part = "conv" if m.group(2) == "proj" else "norm"
        return f"stages.{_OFFICIAL_EMBED_NETWORK[int(m.group(1))]}.downsample.{part}.{m.group(3)}"
    m = re.match(r"network\.(\d+)\.(\d+)\.(.*)", key)
    if m and int(m.group(1)) in _OFFICIAL_BLOCK_NETWORK:
        rest = re.sub(r"^layer_scale_([12])$", r"ls\1.gamma", m.group(3))
        return f"stages.{_OFFICIAL_BLOCK_NETWORK[int(m.group(1))]}.blocks.{m.group(2)}.{rest}"
    if key.startswith("dist_head."):
        return "head_dist." + key[len("dist_head."):]
    return key


# --------------------------------------------------------------------------- transforms
def _conv(w):  # PyTorch (O, I, kh, kw) -> Keras (kh, kw, I, O)
    return np.transpose(w, (2, 3, 1, 0))


def _linear(w):  # PyTorch (out, in) -> Keras (in, out)
    return np.transpose(w, (1, 0))


def _vector(w):  # (C,), or (C, 1, 1) layer scales in some exports
    return np.reshape(w, (-1,))


def _same(w):
    return w


#: Each Keras-layout transform's inverse, for writing a checkpoint back in timm's layout.
_INVERSE = {_conv: lambda w: np.transpose(w, (3, 2, 0, 1)), _linear: _linear, _vector: _same, _same: _same}


@dataclasses.dataclass
class Target:
    """One Keras variable filled from one checkpoint tensor."""
    variable: object
    transform: Callable[[np.ndarray], np.ndarray]


def _conv_targets(prefix, conv):
    return {f"{prefix}.weight": Target(conv.kernel, _conv), f"{prefix}.bias": Target(conv.bias, _same)}


def _linear_targets(prefix, dense):
    return {f"{prefix}.weight": Target(dense.kernel, _linear), f"{prefix}.bias": Target(dense.bias, _same)}


def _bn_targets(prefix, bn):
    return {f"{prefix}.weight": Target(bn.gamma, _same), f"{prefix}.bias": Target(bn.beta, _same),
            f"{prefix}.running_mean": Target(bn.moving_mean, _same),
            f"{prefix}.running_var": Target(bn.moving_variance, _same)}


def _ln_targets(prefix, ln):
    return {f"{prefix}.weight": Target(ln.gamma, _same), f"{prefix}.bias": Target(ln.beta, _same)}


def _scale_targets(prefix, block):
    return {f"{prefix}.ls1.gamma": Target(block.ls1.layer_scale, _vector),
            f"{prefix}.ls2.gamma": Target(block.ls2.layer_scale, _vector)}


def _stem_targets(prefix, stem):
    targets = {}
    for i in ("1", "2"):
        targets.update(_conv_targets(f"{prefix}.conv{i}", getattr(stem, f"conv{i}")))
        targets.update(_bn_targets(f"{prefix}.norm{i}", getattr(stem, f"norm{i}")))
    return targets


def _downsample_targets(prefix, down):
    return {**_conv_targets(f"{prefix}.conv", down.conv), **_bn_targets(f"{prefix}.norm", down.norm)}


def _meta4d_targets(prefix, block):
    return {**_scale_targets(prefix, block),
            **_conv_targets(f"{prefix}.mlp.fc1", block.fc1), **_bn_targets(f"{prefix}.mlp.norm1", block.norm1),
            **_conv_targets(f"{prefix}.mlp.fc2", block.fc2), **_bn_targets(f"{prefix}.mlp.norm2", block.norm2)}


def _meta3d_targets(prefix, block):
    attn = block.token_mixer
    return {**_scale_targets(prefix, block),
            **_ln_targets(f"{prefix}.norm1", block.norm1), **_ln_targets(f"{prefix}.norm2", block.norm2),
            **_linear_targets(f"{prefix}.token_mixer.qkv", attn.qkv),
            **_linear_targets(f"{prefix}.token_mixer.proj", attn.proj),
            f"{prefix}.token_mixer.attention_biases": Target(attn.attention_biases, _same),
            **_linear_targets(f"{prefix}.mlp.fc1", block.fc1), **_linear_targets(f"{prefix}.mlp.fc2", block.fc2)}


#: Block-plan unit kind -> (timm key prefix, its Keras layer) -> targets. Flat has no weights.
_UNIT_TARGETS = {"stem": _stem_targets, "downsample": _downsample_targets, "meta4d": _meta4d_targets,
                 "meta3d": _meta3d_targets, "head": lambda prefix, norm: _ln_targets("norm", norm)}


def _plan(model):
    """The block plan of a built model (its config at its input size)."""
    return model.config.blocks(tuple(model.image_shape[:2]))


def keras_targets(model, include_head: bool = True) -> dict[str, Target]:
    """timm key -> Keras variable for every weight of an EfficientFormer model, along its block plan."""
    targets: dict[str, Target] = {}
    for block in _plan(model):
        if block.kind in _UNIT_TARGETS:
            targets.update(_UNIT_TARGETS[block.kind](block.reference_prefix, model.get_layer(block.name)))
    if include_head:
        for name in ("head", "head_dist"):
            targets.update(_linear_targets(name, model.get_layer(name)))
    return targets


def _attention_blocks(model) -> dict[str, "ef_layers.Meta3D"]:
    """timm prefix -> Keras layer of every 3D MetaBlock."""
    return {b.reference_prefix: model.get_layer(b.name) for b in _plan(model) if b.kind == "meta3d"}


def _bias_index_keys(model) -> dict[str, np.ndarray]:
    """timm key of each `attention_bias_idxs` buffer -> the index our layer rebuilt."""
    return {f"{prefix}.token_mixer.attention_bias_idxs": layer.token_mixer.bias_index
            for prefix, layer in _attention_blocks(model).items()}


# --------------------------------------------------------------------------- reading files
def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """Reads a `.safetensors` (no torch needed) or `.pth`/`.pt` checkpoint into NumPy arrays."""
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"a checkpoint path (.safetensors, .pth or .pt) is needed, got {path!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        try:
            return dict(load_file(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"cannot read {path} as safetensors (corrupt or truncated?): {e}") from e
    if ext in (".pth", ".pt", ".bin"):
        return _read_torch(path)
    raise CheckpointError(f"unsupported checkpoint format {ext!r} for {path}: use .safetensors, .pth or .pt")


def _read_torch(path):
    try:
        import torch
    except ImportError as e:
        raise CheckpointError(
            f"reading {path} needs PyTorch: `pip install 'ef-keras[torch]'` (or torch), or convert the "
            "checkpoint to .safetensors") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many unrelated types for corrupt files
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint (corrupt?): {str(e).splitlines()[0]}") \
            from e
    for wrapper in ("model", "state_dict", "model_ema"):
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(hasattr(v, "numpy") for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v.detach().cpu().numpy() for k, v in obj.items()}


# --------------------------------------------------------------------------- loading
def load_state_dict(model, state_dict: dict[str, np.ndarray], skip_head: bool = False, source: str = "checkpoint"):
    """Checks every key and shape, then assigns all weights (or none).

    Args:
        skip_head: ignore the checkpoint's `head`/`head_dist` (fine-tuning to new classes).
    """
    from ef_keras import checkpoint_v2  # V2 models have their own key mapping; each family refuses the other's

    if checkpoint_v2.is_v2_model(model):
        return checkpoint_v2.load_v2_state_dict(model, state_dict, skip_head=skip_head, source=source)
    if checkpoint_v2.detect_family(state_dict) == checkpoint_v2.FAMILY_V2:
        raise CheckpointError(
            f"{source} is an EfficientFormerV2 checkpoint (its keys have V2's depthwise FFN / talking heads), but "
            f"{model.name} is an EfficientFormer (V1); load it into ef_keras.EfficientFormerV2S0/S1/S2/L instead")
    state = {official_to_timm_key(k): np.asarray(v) for k, v in state_dict.items()}
    has_head = _has_head(model)
    targets = keras_targets(model, include_head=has_head and not skip_head)
    index_keys = _bias_index_keys(model)

    unexpected = [k for k in state if k not in targets and k not in index_keys
                  and not k.endswith(_IGNORED_SUFFIXES)
                  and not (re.match(r"head(_dist)?\.", k) and (skip_head or not has_head))]
    missing = [k for k in targets if k not in state]
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match {model.name} ({_describe(model)}): "
            + "; ".join(part for part in (
                f"{len(missing)} missing key(s), e.g. {missing[:3]}" if missing else "",
                f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}" if unexpected else "") if part)
            + ". Is it a checkpoint of another variant or input size?")

    from ef_keras.model import resize_bias_table

    values, resized = [], []
    for key, target in targets.items():
        value = target.transform(state[key])
        expected = tuple(target.variable.shape)
        side = round(value.shape[1] ** 0.5) if value.ndim == 2 else 0
        if key.endswith("attention_biases") and value.shape[0] == expected[0] and value.shape != expected \
                and side * side == value.shape[1]:
            grids = ((side, side), _attention_grid(model, key))  # published tables are square
            value = resize_bias_table(value, *grids)
            resized.append(key.removesuffix(".attention_biases"))
        values.append((target.variable, checked_value(source, key, state[key], value, expected, model.name)))
    for key, index in index_keys.items():
        if key.removesuffix(".attention_bias_idxs") in resized:
            continue
        if key in state and not np.array_equal(state[key], index):
            raise CheckpointError(f"{source}: {key} differs from the {index.shape} relative-position index this "
                                  "model builds; the checkpoint was made for another attention grid")
    for variable, value in values:
        variable.assign(value.astype(variable.dtype))
    if resized:
        warnings.warn(f"{source}: resized the attention bias tables of {len(resized)} block(s) bicubically from the "
                      f"checkpoint's {grids[0]} token grid to the {grids[1]} grid of this input size; fine-tune at "
                      "this size for best accuracy", stacklevel=2)
    return model


def checked_value(source, key, raw, value, expected, model_name, family=""):
    """`value` (tensor `key` in Keras layout) if it has the `expected` shape and finite numbers; else CheckpointError.

    `family` ("V2 ") goes into the hint; both families' importers check every tensor here before
    assigning any.
    """
    if tuple(value.shape) != expected:
        raise CheckpointError(
            f"{source}: {key} has shape {tuple(raw.shape)} (-> {tuple(value.shape)} in Keras layout) "
            f"but {model_name} expects {expected}. Is it a checkpoint of another {family}variant or input size?")
    if not np.issubdtype(value.dtype, np.number) or not np.isfinite(value).all():
        bad = "non-numeric" if not np.issubdtype(value.dtype, np.number) else "NaN or Inf"
        raise CheckpointError(f"{source}: {key} holds {bad} values; the checkpoint is corrupt or from a run "
                              "that diverged. Use an earlier checkpoint")
    return value


def _attention_grid(model, key):
    """The token grid of the 3D MetaBlock a `...token_mixer.*` key belongs to."""
    return _attention_blocks(model)[key.split(".token_mixer.")[0]].token_mixer.resolution


def _describe(model):
    config = getattr(model, "config", None)
    if config is None:
        return "unknown architecture"
    return f"widths {list(config.widths)}, depths {list(config.depths)}, num_vit {config.num_vit}"


def load_weights_from_checkpoint(model, path: str, skip_head: bool = False):
    """Loads an official or timm EfficientFormer checkpoint (.safetensors / .pth / .pt) into `model`.

    Example:
        >>> model = ef_keras.EfficientFormerL1()
        >>> ef_keras.load_weights_from_checkpoint(model, "efficientformer_l1.safetensors")
    """
    return load_state_dict(model, read_state_dict(path), skip_head=skip_head, source=path)


def save_checkpoint(model, path: str) -> None:
    """Writes `model`'s weights as a `.safetensors` state dict in timm's key layout.

    What `load_weights_from_checkpoint` reads back (and what timm's `efficientformer_*`
    loads with `strict=True`): every weight under its timm key in PyTorch layout, plus the
    attention blocks' `attention_bias_idxs` buffers. The write is atomic.
    """
    from safetensors.numpy import save_file

    from ef_keras import checkpoint_v2
    from ef_keras.output import writing

    if checkpoint_v2.is_v2_model(model):
        return checkpoint_v2.save_v2_checkpoint(model, path)
    state = {key: np.ascontiguousarray(_INVERSE[t.transform](np.asarray(t.variable.numpy())))
             for key, t in keras_targets(model, include_head=_has_head(model)).items()}
    state.update({key: index.astype(np.int64) for key, index in _bias_index_keys(model).items()})
    with writing(os.fspath(path)) as tmp:
        save_file(state, tmp)


def _has_head(model) -> bool:
    return any(layer.name == "head" for layer in model.layers)


def load_imagenet_weights(model):
    """Downloads (once, into the Keras cache) and loads the published weights of the model's preset.

    Where and under which name come from `ef_keras.presets`; the file's sha256 is checked
    when the preset records one.
    """
    import keras

    from ef_keras.presets import get_preset

    variant = model.config.name
    preset = get_preset(variant)
    url = preset.weights_url
    try:
        path = keras.utils.get_file(fname=preset.weights_file, origin=url, file_hash=preset.weights_sha256,
                                    hash_algorithm="sha256", cache_subdir="models/ef_keras")
    except Exception as e:  # get_file wraps network failures in plain Exceptions
        raise CheckpointError(
            f"could not download the ImageNet weights for {variant} ({str(e).splitlines()[0]}). Offline? Fetch "
            f"{url} on a connected machine and pass weights='/path/to/model.safetensors' instead") from e
    return load_state_dict(model, read_state_dict(path), source=path)
