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

#: timm's published distilled ImageNet-1k weights (Hugging Face hub, safetensors).
IMAGENET_URLS = {
    v: f"https://huggingface.co/timm/efficientformer_{v}.snap_dist_in1k/resolve/main/model.safetensors"
    for v in ("l1", "l3", "l7")
}
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


def _block_prefix(layer) -> str:
    """timm prefix of a MetaBlock layer: "stage3_block4" -> "stages.3.blocks.4"."""
    stage, block = re.fullmatch(r"stage(\d)_block(\d+)", layer.name).groups()
    return f"stages.{stage}.blocks.{block}"


def keras_targets(model, include_head: bool = True) -> dict[str, Target]:
    """timm key -> Keras variable for every weight of an EfficientFormer model."""
    targets: dict[str, Target] = {}
    for layer in model.layers:
        name = layer.name
        if isinstance(layer, ef_layers.Stem):
            for part in ("conv1", "conv2"):
                targets.update(_conv_targets(f"stem.{part}", getattr(layer, part)))
            for part in ("norm1", "norm2"):
                targets.update(_bn_targets(f"stem.{part}", getattr(layer, part)))
        elif isinstance(layer, ef_layers.Downsample):
            prefix = f"stages.{name.removeprefix('downsample')}.downsample"
            targets.update(_conv_targets(f"{prefix}.conv", layer.conv))
            targets.update(_bn_targets(f"{prefix}.norm", layer.norm))
        elif isinstance(layer, (ef_layers.Meta4D, ef_layers.Meta3D)):
            prefix = _block_prefix(layer)
            targets.update(_scale_targets(prefix, layer))
            if isinstance(layer, ef_layers.Meta4D):
                targets.update(_conv_targets(f"{prefix}.mlp.fc1", layer.fc1))
                targets.update(_bn_targets(f"{prefix}.mlp.norm1", layer.norm1))
                targets.update(_conv_targets(f"{prefix}.mlp.fc2", layer.fc2))
                targets.update(_bn_targets(f"{prefix}.mlp.norm2", layer.norm2))
            else:
                attn = layer.token_mixer
                targets.update(_ln_targets(f"{prefix}.norm1", layer.norm1))
                targets.update(_ln_targets(f"{prefix}.norm2", layer.norm2))
                targets.update(_linear_targets(f"{prefix}.token_mixer.qkv", attn.qkv))
                targets.update(_linear_targets(f"{prefix}.token_mixer.proj", attn.proj))
                targets[f"{prefix}.token_mixer.attention_biases"] = Target(attn.attention_biases, _same)
                targets.update(_linear_targets(f"{prefix}.mlp.fc1", layer.fc1))
                targets.update(_linear_targets(f"{prefix}.mlp.fc2", layer.fc2))
        elif name == "norm":
            targets.update(_ln_targets("norm", layer))
        elif name in ("head", "head_dist") and include_head:
            targets.update(_linear_targets(name, layer))
    return targets


def _bias_index_keys(model) -> dict[str, np.ndarray]:
    """timm key of each `attention_bias_idxs` buffer -> the index our layer rebuilt."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, ef_layers.Meta3D):
            out[f"{_block_prefix(layer)}.token_mixer.attention_bias_idxs"] = layer.token_mixer.bias_index
    return out


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
    state = {official_to_timm_key(k): np.asarray(v) for k, v in state_dict.items()}
    has_head = any(layer.name == "head" for layer in model.layers)
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

    values, resized = [], []
    for key, target in targets.items():
        value = target.transform(state[key])
        expected = tuple(target.variable.shape)
        if key.endswith("attention_biases") and value.shape[0] == expected[0] and value.shape != expected \
                and round(value.shape[1] ** 0.5) ** 2 == value.shape[1]:
            grid = _attention_grid(model, key)
            value = _resize_bias_table(value, grid)
            resized.append(key.removesuffix(".attention_biases"))
        if tuple(value.shape) != expected:
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(state[key].shape)} (-> {tuple(value.shape)} in Keras layout) "
                f"but {model.name} expects {expected}. Is it a checkpoint of another variant or input size?")
        if not np.issubdtype(value.dtype, np.number) or not np.isfinite(value).all():
            bad = "non-numeric" if not np.issubdtype(value.dtype, np.number) else "NaN or Inf"
            raise CheckpointError(f"{source}: {key} holds {bad} values; the checkpoint is corrupt or from a run "
                                  "that diverged. Use an earlier checkpoint")
        values.append((target.variable, value))
    for key, index in index_keys.items():
        if key.removesuffix(".attention_bias_idxs") in resized:
            continue
        if key in state and not np.array_equal(state[key], index):
            raise CheckpointError(f"{source}: {key} differs from the {index.shape} relative-position index this "
                                  "model builds; the checkpoint was made for another attention grid")
    for variable, value in values:
        variable.assign(value.astype(variable.dtype))
    if resized:
        warnings.warn(f"{source}: resized the attention bias tables of {len(resized)} block(s) bicubically to the "
                      f"{_attention_grid(model, resized[0] + '.attention_biases')} token grid of this input size; "
                      "fine-tune at this size for best accuracy", stacklevel=2)
    return model


def _attention_grid(model, key):
    stage, block = re.match(r"stages\.(\d)\.blocks\.(\d+)\.", key).groups()
    return model.get_layer(f"stage{stage}_block{block}").token_mixer.resolution


def _resize_bias_table(table: np.ndarray, grid) -> np.ndarray:
    """(heads, r·r) relative-position biases of an r×r grid -> (heads, gh·gw), bicubic.

    The reference's detection/segmentation backbones likewise resize their biases
    bicubically for other resolutions; accuracy is best after fine-tuning at the new size.
    """
    import tensorflow as tf

    heads, n = table.shape
    r = int(round(n ** 0.5))
    image = tf.convert_to_tensor(table.reshape(heads, r, r, 1), tf.float32)
    resized = tf.image.resize(image, grid, method="bicubic").numpy()
    return resized.reshape(heads, grid[0] * grid[1])


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


def load_imagenet_weights(model):
    """Downloads (once, into the Keras cache) and loads timm's ImageNet weights for l1/l3/l7."""
    import keras

    variant = model.config.name
    url = IMAGENET_URLS[variant]
    fname = f"efficientformer_{variant}.snap_dist_in1k.safetensors"
    try:
        path = keras.utils.get_file(fname=fname, origin=url, cache_subdir="models/ef_keras")
    except Exception as e:  # get_file wraps network failures in plain Exceptions
        raise CheckpointError(
            f"could not download the ImageNet weights for {variant} ({str(e).splitlines()[0]}). Offline? Fetch "
            f"{url} on a connected machine and pass weights='/path/to/model.safetensors' instead") from e
    return load_state_dict(model, read_state_dict(path), source=path)
