"""Checkpoints, the family-independent half: read, check every key and shape, assign, save, download.

A family supplies only its key map (timm's `checkpoint_filter_fn`, keras-hub's `port_weight`):
its `weights` module lists, for a built model, every timm key with the Keras variable it fills
and the transform it needs (`Target`), and renames the official repository's keys to timm's. The
registry carries those hooks (`ef_keras.registry.Family`), so this module loads and saves any
family's models: every key and shape is checked before anything is assigned, so a failed load
never leaves a half-loaded model, and attention-bias tables of another token grid are resized
bicubically where the table allows it (published tables are square).
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from typing import Callable

import numpy as np

from ef_keras.errors import EfKerasError
from ef_keras.models.common_layers import describe_grid_changes, resize_bias_table
from ef_keras.registry import families, family_of

#: Buffers that carry no weights: checked or ignored, never assigned.
_IGNORED_SUFFIXES = ("num_batches_tracked",)
_HEAD_KEY = re.compile(r"head(_dist)?\.")


class CheckpointError(EfKerasError):
    """A checkpoint that cannot be read or does not fit the model."""


# --------------------------------------------------------------------------- the official repositories' layout
#: `network.N` of the official (snap-research) models: the blocks of stage s are N = 2s, ...
_OFFICIAL_BLOCK_STAGES = {0: 0, 2: 1, 4: 2, 6: 3}
#: ... and the patch embedding (downsampling) into stage s is N = 2s - 1.
_OFFICIAL_DOWNSAMPLE_STAGES = {1: 1, 3: 2, 5: 3}


@dataclasses.dataclass(frozen=True)
class OfficialLayout:
    """How a family's official (snap-research) checkpoint keys name what timm calls otherwise.

    Attributes:
        stem: `patch_embed.<i>` -> timm's stem module.
        downsample: `network.<N>.<part>` of a downsampling -> timm's `downsample.<module>`.
        block_rules: (regex, replacement) pairs for the tail of a block key; the first that changes it applies.
        downsample_attn_rules: the same for `network.<N>.attn.<tail>` (V2's attention downsampling).
    """

    stem: dict
    downsample: dict
    block_rules: tuple
    downsample_attn_rules: tuple = ()

    def to_timm(self, key: str) -> str:
        """Renames one official key to timm's layout (timm keys come back unchanged)."""
        m = re.match(r"patch_embed\.(\d)\.(.*)", key)
        if m and m.group(1) in self.stem:
            return f"stem.{self.stem[m.group(1)]}.{m.group(2)}"
        m = re.match(r"network\.(\d+)\.(\w+)\.(.*)", key)
        if m and int(m.group(1)) in _OFFICIAL_DOWNSAMPLE_STAGES:
            down = f"stages.{_OFFICIAL_DOWNSAMPLE_STAGES[int(m.group(1))]}.downsample"
            if m.group(2) in self.downsample:
                return f"{down}.{self.downsample[m.group(2)]}.{m.group(3)}"
            if m.group(2) == "attn":
                return f"{down}.attn.{_rename(m.group(3), self.downsample_attn_rules)}"
        m = re.match(r"network\.(\d+)\.(\d+)\.(.*)", key)
        if m and int(m.group(1)) in _OFFICIAL_BLOCK_STAGES:
            tail = _rename(m.group(3), self.block_rules)
            return f"stages.{_OFFICIAL_BLOCK_STAGES[int(m.group(1))]}.blocks.{m.group(2)}.{tail}"
        return "head_dist." + key.removeprefix("dist_head.") if key.startswith("dist_head.") else key


def _rename(tail: str, rules) -> str:
    for pattern, replacement in rules:
        new = re.sub(pattern, replacement, tail)
        if new != tail:
            return new
    return tail


# --------------------------------------------------------------------------- transforms (PyTorch -> Keras)
def conv_kernel(w):
    """PyTorch Conv2d (O, I, kh, kw) -> Keras Conv2D (kh, kw, I, O)."""
    return np.transpose(w, (2, 3, 1, 0))


def depthwise_kernel(w):
    """PyTorch depthwise Conv2d (C, 1, kh, kw) -> Keras DepthwiseConv2D (kh, kw, C, 1)."""
    return np.transpose(w, (2, 3, 0, 1))


def linear_kernel(w):
    """PyTorch Linear (out, in) -> Keras Dense (in, out)."""
    return np.transpose(w, (1, 0))


def vector(w):
    """(C,), or (C, 1, 1) layer scales in some exports -> (C,)."""
    return np.reshape(w, (-1,))


def same(w):
    return w


#: Each transform's inverse, for writing a checkpoint back in timm's layout.
_INVERSE = {conv_kernel: lambda w: np.transpose(w, (3, 2, 0, 1)), depthwise_kernel: depthwise_kernel,
            linear_kernel: linear_kernel, vector: same, same: same}


@dataclasses.dataclass
class Target:
    """One Keras variable filled from one checkpoint tensor.

    `grid`: for an attention-bias table, the token grid it is indexed over, so a table of
    another (square) grid can be resized to it.
    """

    variable: object
    transform: Callable[[np.ndarray], np.ndarray]
    grid: tuple | None = None


def conv_targets(prefix, conv, depthwise=False) -> dict[str, Target]:
    return {f"{prefix}.weight": Target(conv.kernel, depthwise_kernel if depthwise else conv_kernel),
            f"{prefix}.bias": Target(conv.bias, same)}


def linear_targets(prefix, dense) -> dict[str, Target]:
    return {f"{prefix}.weight": Target(dense.kernel, linear_kernel), f"{prefix}.bias": Target(dense.bias, same)}


def batch_norm_targets(prefix, bn) -> dict[str, Target]:
    return {f"{prefix}.weight": Target(bn.gamma, same), f"{prefix}.bias": Target(bn.beta, same),
            f"{prefix}.running_mean": Target(bn.moving_mean, same),
            f"{prefix}.running_var": Target(bn.moving_variance, same)}


def layer_norm_targets(prefix, ln) -> dict[str, Target]:
    return {f"{prefix}.weight": Target(ln.gamma, same), f"{prefix}.bias": Target(ln.beta, same)}


def bias_table_target(attention) -> Target:
    """An attention layer's `attention_biases`, resizable to the layer's `bias_grid`."""
    return Target(attention.attention_biases, same, grid=attention.bias_grid)


def head_targets(model) -> dict[str, Target]:
    """The classifier heads (`head`, `head_dist`) the model has."""
    names = {layer.name for layer in model.layers}
    return {k: t for name in ("head", "head_dist") if name in names
            for k, t in linear_targets(name, model.get_layer(name)).items()}


def has_head(model) -> bool:
    return any(layer.name == "head" for layer in model.layers)


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
def checkpoint_family(keys):
    """The registered family whose checkpoints have keys like these (by its `checkpoint_marks`); else None."""
    keys = list(keys)
    for family in families():
        if any(re.search(family.checkpoint_marks, k) for k in keys):
            return family
    return None


def load_state_dict(model, state_dict: dict[str, np.ndarray], skip_head: bool = False, source: str = "checkpoint"):
    """Checks every key and shape, then assigns all weights (or none).

    Args:
        skip_head: ignore the checkpoint's `head`/`head_dist` (fine-tuning to new classes).
    """
    family = family_of(model)
    found = checkpoint_family(state_dict)
    if found is not None and found is not family:
        raise CheckpointError(
            f"{source} is an {found.title} checkpoint (its keys have {found.title}'s blocks), but {model.name} is an "
            f"{family.title}; load it into {' or '.join(found.entry_points)} instead")
    state = {family.official_to_timm_key(k): np.asarray(v) for k, v in state_dict.items()}
    with_head = has_head(model)
    targets = family.weight_map(model, include_head=with_head and not skip_head)
    index_keys = family.bias_index_keys(model)

    unexpected = [k for k in state if k not in targets and k not in index_keys
                  and not k.endswith(_IGNORED_SUFFIXES) and not (_HEAD_KEY.match(k) and (skip_head or not with_head))]
    missing = [k for k in targets if k not in state]
    if missing or unexpected:
        config = model.config
        raise CheckpointError(
            f"{source} does not match {model.name} (widths {list(config.widths)}, depths {list(config.depths)}, "
            f"num_vit {config.num_vit}): "
            + "; ".join(part for part in (
                f"{len(missing)} missing key(s), e.g. {missing[:3]}" if missing else "",
                f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}" if unexpected else "") if part)
            + ". Is it a checkpoint of another variant or input size?")

    values, resized = [], {}
    for key, target in targets.items():
        value = target.transform(state[key])
        expected = tuple(target.variable.shape)
        side = round(value.shape[1] ** 0.5) if value.ndim == 2 else 0
        if target.grid and value.shape[0] == expected[0] and value.shape != expected and side * side == value.shape[1]:
            value = resize_bias_table(value, (side, side), target.grid)
            resized[key.removesuffix(".attention_biases")] = ((side, side), tuple(target.grid))
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
        warnings.warn(f"{source}: resized the attention bias tables of {len(resized)} block(s) bicubically "
                      f"({describe_grid_changes(resized.values())}) to this input size; fine-tune at this size "
                      "for best accuracy", stacklevel=2)
    return model


def checked_value(source, key, raw, value, expected, model_name):
    """`value` (tensor `key` in Keras layout) if it has the `expected` shape and finite numbers.

    Otherwise a one-line CheckpointError: every tensor is checked here before any is assigned.
    """
    if tuple(value.shape) != expected:
        raise CheckpointError(
            f"{source}: {key} has shape {tuple(raw.shape)} (-> {tuple(value.shape)} in Keras layout) "
            f"but {model_name} expects {expected}. Is it a checkpoint of another variant or input size?")
    if not np.issubdtype(value.dtype, np.number) or not np.isfinite(value).all():
        bad = "non-numeric" if not np.issubdtype(value.dtype, np.number) else "NaN or Inf"
        raise CheckpointError(f"{source}: {key} holds {bad} values; the checkpoint is corrupt or from a run "
                              "that diverged. Use an earlier checkpoint")
    return value


def load_weights_from_checkpoint(model, path: str, skip_head: bool = False):
    """Loads an official or timm checkpoint (.safetensors / .pth / .pt) of the model's family into `model`.

    Example:
        >>> model = ef_keras.EfficientFormerL1()
        >>> ef_keras.load_weights_from_checkpoint(model, "efficientformer_l1.safetensors")
    """
    return load_state_dict(model, read_state_dict(path), skip_head=skip_head, source=os.fspath(path))


def save_checkpoint(model, path: str) -> None:
    """Writes `model`'s weights as a `.safetensors` state dict in timm's key layout (PyTorch tensor layout).

    What `load_weights_from_checkpoint` reads back and what timm's model of the family loads with
    `strict=True`: every weight under its timm key, BatchNorm step counters (0; timm's state dicts
    have them), and the attention-bias index buffers where timm keeps them in the state dict. The
    write is atomic.
    """
    from safetensors.numpy import save_file

    from ef_keras.output import writing

    family = family_of(model)
    state = {key: np.ascontiguousarray(_INVERSE[t.transform](np.asarray(t.variable.numpy())))
             for key, t in family.weight_map(model, include_head=has_head(model)).items()}
    state.update({key.removesuffix("running_var") + "num_batches_tracked": np.array(0, np.int64)
                  for key in list(state) if key.endswith(".running_var")})
    if family.bias_index_in_state_dict:
        state.update({key: index.astype(np.int64) for key, index in family.bias_index_keys(model).items()})
    with writing(os.fspath(path)) as tmp:
        save_file(state, tmp)


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
