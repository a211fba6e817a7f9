"""The EfficientFormer supernet: one MetaPath per block position, mixed by Gumbel-softmax.

Paper §3.3, step 1. The supernet is the model family at its largest widths and depths
(an `EfficientFormerConfig`, `num_vit` ignored). Block position k of stage s is a MetaPath
whose candidates are {MB4D, identity} in stages 1-2 and {MB4D, MB3D, identity} in stages
3-4. With architecture parameters α (one row per MetaPath, columns 4D | 3D | I) and
Gumbel noise ε, the MetaPath's output is

    X_{k+1} = Σ_n softmax((α + ε) / τ)_n · MP_n(X_k)

(ε is standard Gumbel noise −log(−log U), drawn once per MetaPath and batch; stages 1-2
mask the 3D column with −∞). Two mixing modes:

- "soft": the paper's equation, every candidate computed and weighted;
- "hard": GDAS (Dong & Yang, CVPR 2019): the forward pass runs only the candidate
  k = argmax((α + ε)/τ) (a `tf.switch_case`, so the others cost nothing), scaled by
  h_k = 1 + w_k − stop_gradient(w_k) with w the soft weights: the value is the sampled
  block's output and the gradient reaches α through w_k (straight-through).
A 3D MetaBlock placed among 4D blocks handles its own layout: it flattens (B, H, W, C) to
(B, H·W, C) tokens, runs attention + MLP and reshapes back, so every path composes. Its
attention bias table is sized for that stage's grid at the supernet's input size.

Temperature schedule: exponential annealing τ(t) = τ₀·(τ₁/τ₀)^(t/T) from τ₀ = 5 to
τ₁ = 0.5 over the T training steps (FBNet anneals 5.0 → ×0.956 per epoch; we anneal over
steps because proxy runs are short). The noise is a pure function of (seed, step, path),
so a resumed run draws exactly the noise an uninterrupted one would.

Sub-networks: `child_model` builds the `ef_keras.EfficientFormer` of an `Arch` and copies
the supernet's weights into it. Width reduction is channel slicing of the single-width
supernet: every tensor keeps its leading channels (conv kernels [:, :, :Cin, :Cout],
BatchNorm/LayerNorm/layer-scale vectors [:C], Dense kernels [:Cin, :Cout]). The same
function gives the accuracy of every candidate during slimming and the final model's
weights, so what slimming measured is exactly what it ships.
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from ef_keras import layers as ef_layers
from ef_keras.models.config import ConfigError
from ef_keras.models.efficientformer.config import EfficientFormerConfig
from ef_keras.errors import EfKerasError
from ef_keras.models.efficientformer.model import EfficientFormer, block_layer
from ef_keras.models.plan import meta_blocks, plan
from ef_keras.output import write_json, writing
from search.arch import CANDIDATES, STAGES_WITH_3D, Arch

TAU_START = 5.0
TAU_END = 0.5
_MASKED = -1e9
#: Supernet mixing modes (see the module docstring).
MIXING_MODES = ("soft", "hard")


class SupernetError(EfKerasError):
    """A supernet directory or checkpoint that does not match what was asked."""


def tau_at(step, total_steps, tau_start=TAU_START, tau_end=TAU_END) -> float:
    """Annealed Gumbel-softmax temperature at `step` of `total_steps` (exponential, τ₀ → τ₁)."""
    frac = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return float(tau_start * (tau_end / tau_start) ** frac)


def gumbel_noise(seed: int, step: int, num_paths: int) -> tf.Tensor:
    """Standard Gumbel noise (num_paths, 3), a pure function of (seed, step)."""
    u = tf.random.stateless_uniform((num_paths, len(CANDIDATES)), seed=(seed, step),
                                    minval=1e-6, maxval=1.0 - 1e-6)
    return -tf.math.log(-tf.math.log(u))


class Supernet(keras.Model):
    """Single-width supernet with Gumbel-softmax MetaPaths.

    Args:
        config: the largest architecture of the space (widths, depths, block hyper-parameters).
        image_size: proxy training resolution (square, multiple of 32).
        classes: number of classes of the (single) classifier head.
        mixing: "soft" (every candidate computed, the paper's equation) or "hard" (GDAS:
            only the sampled candidate runs, straight-through gradient to α).

    Call: `supernet(images, training=..., noise=None)`. With `noise` (from `gumbel_noise`)
    the MetaPaths mix with Gumbel-softmax weights; without it they mix with softmax(α/τ),
    the deterministic expectation used for monitoring.
    """

    def __init__(self, config: EfficientFormerConfig, image_size: int = 64, classes: int = 10, mixing: str = "soft",
                 **kwargs):
        super().__init__(name=kwargs.pop("name", "supernet"), **kwargs)
        if image_size % 32 or image_size < 64:
            raise SupernetError(f"image_size={image_size}: the supernet input must be a multiple of 32, >= 64 "
                                "(stage 4 needs a grid of at least 2x2)")
        if mixing not in MIXING_MODES:
            raise SupernetError(f"mixing must be one of {MIXING_MODES}, got {mixing!r}")
        self.config, self.image_size, self.classes, self.mixing = config, image_size, classes, mixing
        self._plan = plan(config.widths, [("4d",) * d for d in config.depths], (image_size, image_size), classes)
        self.stem = block_layer(self._plan[0], config)
        self.downsamples = [block_layer(b, config) for b in self._plan if b.kind == "downsample"]
        self.blocks_4d, self.blocks_3d, self.path_stage = [], [], []
        for b in meta_blocks(self._plan):
            self.path_stage.append(b.stage)
            self.blocks_4d.append(block_layer(b, config, name=f"stage{b.stage}_path{b.index}_4d"))
            self.blocks_3d.append(
                block_layer(dataclasses.replace(b, kind="meta3d"), config, name=f"stage{b.stage}_path{b.index}_3d")
                if b.stage in STAGES_WITH_3D else None)
        self.num_paths = len(self.path_stage)
        self.norm = keras.layers.LayerNormalization(epsilon=ef_layers.LN_EPSILON, name="norm")
        self.head = keras.layers.Dense(classes, name="head")
        self.alpha = self.add_weight(name="alpha", shape=(self.num_paths, len(CANDIDATES)),
                                     initializer="zeros", trainable=True)
        self.tau = self.add_weight(name="tau", shape=(), trainable=False,
                                   initializer=keras.initializers.Constant(TAU_START))
        mask = np.ones((self.num_paths, len(CANDIDATES)), "float32")
        for p, s in enumerate(self.path_stage):
            if s not in STAGES_WITH_3D:
                mask[p, CANDIDATES.index("3d")] = 0.0
        self.candidate_mask = mask
        self.build((None, image_size, image_size, 3))

    def build(self, input_shape):
        x = keras.KerasTensor(input_shape)
        self.compute_output_spec(x)
        self.built = True

    # ------------------------------------------------------------------ forward
    def mixing_weights(self, noise=None):
        """(num_paths, 3) Gumbel-softmax weights of the candidates (masked columns are 0)."""
        logits = self.alpha if noise is None else self.alpha + noise
        logits = ops.where(self.candidate_mask > 0, logits / self.tau, _MASKED)
        return ops.softmax(logits, axis=-1)

    def call(self, images, training=False, noise=None):
        weights = self.mixing_weights(noise)
        hard = self.mixing == "hard" and noise is not None
        if hard:
            chosen = ops.argmax(weights, axis=-1)
            weights = ops.one_hot(chosen, len(CANDIDATES)) + weights - ops.stop_gradient(weights)
        downsamples, p = iter(self.downsamples), 0
        for block in self._plan:
            if block.kind == "stem":
                x = self.stem(images, training=training)
            elif block.kind == "downsample":
                x = next(downsamples)(x, training=training)
            elif block.kind == "meta4d":  # MetaPath p
                x = (self._sampled_path(p, x, weights, chosen[p], training) if hard
                     else self._mixed_path(p, x, weights, training))
                p += 1
        tokens = ops.reshape(x, (-1, x.shape[1] * x.shape[2], x.shape[3]))
        return self.head(ops.mean(self.norm(tokens), axis=1))

    def _mixed_path(self, p, x, weights, training):
        """Soft mixing: Σ_n w_n · MP_n(x) over every candidate of MetaPath p."""
        out = weights[p, 2] * x + weights[p, 0] * self.blocks_4d[p](x, training=training)
        if self.blocks_3d[p] is not None:
            out = out + weights[p, 1] * _tokens_in_out(self.blocks_3d[p], x, training)
        return out

    def _sampled_path(self, p, x, weights, chosen, training):
        """Hard mixing: only candidate `chosen` of MetaPath p runs, times its straight-through weight."""
        block_3d = self.blocks_3d[p]
        branches = [lambda: weights[p, 0] * self.blocks_4d[p](x, training=training),
                    (lambda: weights[p, 1] * _tokens_in_out(block_3d, x, training)) if block_3d is not None
                    else (lambda: weights[p, 2] * x),  # masked: never sampled
                    lambda: weights[p, 2] * x]
        return tf.switch_case(tf.cast(chosen, tf.int32), branches)

    # ------------------------------------------------------------------ variables
    def weight_variables(self):
        """Network weights (everything trainable except α)."""
        return [v for v in self.trainable_variables if v is not self.alpha]

    def probabilities(self) -> np.ndarray:
        """softmax(α) per MetaPath (masked candidates 0): the importance the paper reads."""
        a = np.where(self.candidate_mask > 0, np.asarray(self.alpha.numpy(), "float64"), -np.inf)
        e = np.exp(a - a.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def paths_by_stage(self) -> list[list[int]]:
        """Global path indices grouped by stage."""
        return [[p for p, s in enumerate(self.path_stage) if s == stage] for stage in range(4)]


def _tokens_in_out(block, x, training):
    """Runs a 3D MetaBlock on a 4D map: flatten to tokens, block, reshape back."""
    _, h, w, c = x.shape
    y = block(ops.reshape(x, (-1, h * w, c)), training=training)
    return ops.reshape(y, (-1, h, w, c))


# ---------------------------------------------------------------------- sub-networks
def child_model(supernet: Supernet, arch: Arch, name: str = "searched", calibration=None) -> EfficientFormer:
    """The `ef_keras.EfficientFormer` of `arch` at the supernet's input size, weights inherited.

    Channels are sliced from the front of every supernet tensor. Both classifier heads get
    the supernet's head, so the distilled model's averaged output equals the head's. With
    `calibration` images, BatchNorm statistics are then re-estimated on them
    (`recalibrate_batchnorm`).
    """
    arch.validate(supernet.config)
    config = arch.to_config(supernet.config, name=name)
    child = EfficientFormer(config, input_shape=(supernet.image_size, supernet.image_size, 3),
                            classes=supernet.classes, distillation=True)
    by_stage = supernet.paths_by_stage()
    downsamples = iter(supernet.downsamples)
    position = [0] * len(by_stage)  # the next active MetaPath of each stage
    pairs = []
    for block in config.blocks((supernet.image_size, supernet.image_size), supernet.classes):
        if block.kind == "stem":
            pairs.append((supernet.stem, child.get_layer(block.name)))
        elif block.kind == "downsample":
            pairs.append((next(downsamples), child.get_layer(block.name)))
        elif block.kind in ("meta4d", "meta3d"):
            p = by_stage[block.stage][arch.active(block.stage)[position[block.stage]]]
            position[block.stage] += 1
            source = supernet.blocks_4d[p] if block.kind == "meta4d" else supernet.blocks_3d[p]
            pairs.append((source, child.get_layer(block.name)))
    pairs += [(supernet.norm, child.get_layer("norm")), (supernet.head, child.get_layer("head")),
              (supernet.head, child.get_layer("head_dist"))]
    for src, dst in pairs:
        _copy_sliced(src, dst)
    if calibration is not None:
        recalibrate_batchnorm(child, calibration)
    return child


def recalibrate_batchnorm(model: keras.Model, images) -> None:
    """Resets every BatchNorm's running statistics to those of `images` (one forward pass).

    Dropping blocks or slicing channels changes what every later BatchNorm sees, so the
    supernet's running statistics no longer fit the sub-network (Once-for-All recalibrates
    them the same way). Uses training images, never the held-out split.
    """
    norms = [layer for layer in _all_sublayers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in norms]
    for bn in norms:
        bn.momentum = 0.0  # moving = batch statistics exactly
    try:
        model(images, training=True)
    finally:
        for bn, m in zip(norms, saved):
            bn.momentum = m


def _all_sublayers(layer):
    for sub in layer._flatten_layers(include_self=False, recursive=True):
        yield sub


def _copy_sliced(src, dst):
    src_w, dst_w = src.weights, dst.weights
    if len(src_w) != len(dst_w):
        raise SupernetError(f"layer {dst.name}: {len(dst_w)} weights vs {len(src_w)} in supernet layer {src.name}")
    for a, b in zip(src_w, dst_w):
        if any(n > m for n, m in zip(b.shape, a.shape)) or len(a.shape) != len(b.shape):
            raise SupernetError(f"{b.path} shape {b.shape} does not fit in supernet {a.path} {a.shape}")
        b.assign(a.numpy()[tuple(slice(0, n) for n in b.shape)])


# ---------------------------------------------------------------------- on disk
SUPERNET_JSON = "supernet.json"
WEIGHTS_FILE = "supernet.weights.h5"


def save_supernet(supernet: Supernet, directory: str, extra: dict | None = None) -> None:
    """Writes supernet.json (architecture, input size, classes) and the weights, atomically."""
    os.makedirs(directory, exist_ok=True)
    meta = {"config": supernet.config.to_dict(), "image_size": supernet.image_size,
            "classes": supernet.classes, **(extra or {})}
    with writing(os.path.join(directory, WEIGHTS_FILE)) as tmp:
        supernet.save_weights(tmp)
    write_json(os.path.join(directory, SUPERNET_JSON), meta)


def load_supernet(directory: str, expect_config: EfficientFormerConfig | None = None) -> tuple[Supernet, dict]:
    """Rebuilds a trained supernet from `directory`; SupernetError if missing or mismatched."""
    meta_path = os.path.join(directory, SUPERNET_JSON)
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    if not os.path.isfile(meta_path) or not os.path.isfile(weights_path):
        raise SupernetError(f"{directory} holds no trained supernet ({SUPERNET_JSON} + {WEIGHTS_FILE}); "
                            "train one with `python -m search.train_supernet --out DIR`")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        config = EfficientFormerConfig.from_dict(meta["config"])
        image_size, classes = int(meta["image_size"]), int(meta["classes"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, ConfigError) as e:
        raise SupernetError(f"{meta_path} is not a valid supernet description: {e}") from e
    if expect_config is not None and (tuple(expect_config.widths), tuple(expect_config.depths)) != (
            tuple(config.widths), tuple(config.depths)):
        raise SupernetError(f"supernet in {directory} has widths {list(config.widths)} depths "
                            f"{list(config.depths)}, expected {list(expect_config.widths)} "
                            f"{list(expect_config.depths)}")
    supernet = Supernet(config, image_size=image_size, classes=classes)
    try:
        supernet.load_weights(weights_path)
    except Exception as e:  # h5py/Keras raise many types for a corrupt or mismatched file
        raise SupernetError(f"{weights_path} does not match its {SUPERNET_JSON} "
                            f"(widths {list(config.widths)}, depths {list(config.depths)}): "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    return supernet, meta
