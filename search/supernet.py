"""The EfficientFormer supernet: Gumbel-softmax MetaPaths over an elastic-width network.

Paper §3.3, step 1, with every child that slimming asks about trained (weight sharing).

- **MetaPaths.** Block position k of stage s is a MetaPath whose candidates are
  {MB4D, identity} in stages 1-2 and {MB4D, MB3D, identity} in stages 3-4, with
  architecture parameters α (one row per MetaPath, columns 4D | 3D | I). Mixed by the
  paper's Gumbel-softmax, X_{k+1} = Σ_n softmax((α + ε)/τ)_n · MP_n(X_k) ("soft"), or
  with only the sampled candidate computed (GDAS, "hard": how the weights may train; α
  always trains through the soft mixture, `search.train_supernet` says why). ε is standard
  Gumbel noise −log(−log U), a pure function of (seed, step).
- **Elastic width.** Every stage runs at any width of the search space's grid
  (`search.space`), sliced from the front of the largest weights (`search.elastic`). The
  paper's supernet had a single width ("a multi-width supernet needs too much memory"),
  which left every narrower child untrained; slicing shares one set of weights, so memory
  stays that of the largest network.
- **A child is data.** `forward(images, widths, choices)` takes the child's widths and
  per-MetaPath candidates as tensors, so one traced graph trains and scores every child.

Sub-networks: `child_model` builds the plain `ef_keras.EfficientFormer` of an `Arch` with
the same sliced weights (what slimming ships); `tests/test_elastic.py` checks that it
computes what `forward` computes.

Temperature: τ(t) = τ₀·(τ₁/τ₀)^(t/T), 5 → 0.5 over the training steps (FBNet anneals 5.0 by
×0.956 per epoch; we anneal per step because proxy runs are short).
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow as tf

from ef_keras.errors import EfKerasError
from ef_keras.models.common_layers import LN_EPSILON
from ef_keras.models.efficientformer.model import EfficientFormer, block_layer
from ef_keras.output import write_json, writing
from ef_keras.models.plan import meta_blocks, plan
from search import elastic
from search.arch import CANDIDATES, STAGES_WITH_3D, Arch
from search.space import SearchSpace, SpaceError

TAU_START = 5.0
TAU_END = 0.5
_MASKED = -1e9
#: Supernet mixing modes (see the module docstring).
MIXING_MODES = ("soft", "hard")
#: Version of the on-disk format; 0.2's single-width supernets (no version) are refused.
FORMAT = 2


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
    """Elastic-width supernet with Gumbel-softmax MetaPaths.

    Args:
        space: the search space (largest widths and depths, the width grid).
        image_size: proxy training resolution (square, multiple of 32, >= 64).
        classes: number of classes of the (single) classifier head.
        mixing: how the weights train: "soft" (every candidate computed, the paper's equation)
            or "hard" (GDAS: only the sampled candidate runs).
    """

    def __init__(self, space: SearchSpace, image_size: int = 96, classes: int = 10, mixing: str = "hard", **kwargs):
        super().__init__(name=kwargs.pop("name", "supernet"), **kwargs)
        if image_size % 32 or image_size < 64:
            raise SupernetError(f"image_size={image_size}: the supernet input must be a multiple of 32, >= 64 "
                                "(stage 4 needs a grid of at least 2x2)")
        if mixing not in MIXING_MODES:
            raise SupernetError(f"mixing must be one of {MIXING_MODES}, got {mixing!r}")
        self.space, self.image_size, self.classes, self.mixing = space, image_size, classes, mixing
        config = space.config
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
        self.norm = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="norm")
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
        self._build_layers()

    @property
    def config(self):
        """The largest network of the space (an `EfficientFormerConfig`)."""
        return self.space.config

    def _build_layers(self):
        """Builds every layer at its largest shape (the weights every child slices)."""
        shape = (None, self.image_size, self.image_size, 3)
        for block in self._plan:
            h, w = block.grid
            if block.kind == "stem":
                self.stem.build(shape)
            elif block.kind == "downsample":
                self.downsamples[block.stage - 1].build((None, h, w, block.cin))
        for p, b in enumerate(meta_blocks(self._plan)):
            h, w = b.grid
            self.blocks_4d[p].build((None, h, w, b.cout))
            if self.blocks_3d[p] is not None:
                self.blocks_3d[p].build((None, h * w, b.cout))
        last = self._plan[-1]
        self.norm.build((None, last.tokens, last.cin))
        self.head.build((None, last.cin))
        self.built = True

    def call(self, images, training=False):
        """The largest child, every MetaPath in its 4D candidate (Keras' own entry point)."""
        return self.forward(images, self.space.max_widths, [0] * self.num_paths, training=training)

    # ------------------------------------------------------------------ forward
    def mixing_weights(self, noise=None, bias=0.0):
        """(num_paths, 3) Gumbel-softmax weights of the candidates (masked columns are 0).

        `bias` is added to the tempered logits: a large negative entry rules a candidate out
        (how the supernet trainer's largest and smallest children fix their paths).
        """
        logits = self.alpha if noise is None else self.alpha + noise
        logits = tf.where(self.candidate_mask > 0, logits / self.tau + bias, _MASKED)
        return tf.nn.softmax(logits, axis=-1)

    def forward(self, images, widths, choices, soft_weights=None, training=False, calibrate=False):
        """Logits of one child (or, with `soft_weights`, of the soft mixture) of the supernet.

        Args:
            widths: (4,) int32, each stage's width (on the space's grid).
            choices: (num_paths,) int32, each MetaPath's candidate (0 MB4D, 1 MB3D, 2 identity);
                ignored with `soft_weights`.
            soft_weights: optional (num_paths, 3) mixing weights: every candidate is computed.
            training: BatchNorm on batch statistics (else on the running statistics).
            calibrate: with training, also store those batch statistics as running ones.
        """
        widths = tf.convert_to_tensor(widths, tf.int32)
        choices = None if soft_weights is not None else tf.convert_to_tensor(choices, tf.int32)
        downsamples, p, x = iter(self.downsamples), 0, None
        for block in self._plan:
            w = widths[block.stage]
            if block.kind == "stem":
                x = elastic.stem(self.stem, images, w, training, calibrate)
            elif block.kind == "downsample":
                x = elastic.downsample(next(downsamples), x, widths[block.stage - 1], w, training, calibrate)
            elif block.kind == "meta4d":  # MetaPath p
                x = (self._mixed_path(p, x, w, soft_weights, training, calibrate) if soft_weights is not None
                     else self._chosen_path(p, x, w, choices[p], training, calibrate))
                p += 1
        return elastic.head(self.norm, self.head, x, widths[3], self.classes)

    def _candidates(self, p, x, w, training, calibrate):
        # The branches see the width as a float and cast it back: an int32 tensor captured by
        # some branches of a tf.switch_case gets int32 gradients in those branches and float
        # ones in the others, which TF's type inference reports at length (harmless, but noisy).
        wf = tf.cast(w, tf.float32)
        block_3d = self.blocks_3d[p]
        return [lambda: elastic.meta4d(self.blocks_4d[p], x, tf.cast(wf, tf.int32), training, calibrate),
                (lambda: elastic.meta3d(block_3d, x, tf.cast(wf, tf.int32))) if block_3d is not None
                else (lambda: x),
                lambda: x]

    def _chosen_path(self, p, x, w, choice, training, calibrate):
        """Candidate `choice` of MetaPath p: only it runs, except when training on several replicas.

        There SyncBN's all-reduce cannot sit in a `tf.switch_case` branch: tf.distribute's
        `merge_call` refuses a collective inside a control-flow branch graph (MirroredStrategy and
        MultiWorkerMirroredStrategy alike). Every candidate then runs on the same inputs and the
        chosen output is selected: the same values, and the others' weights get the zero
        gradients of a switch's untaken branches, at the cost of soft mixing.
        """
        candidates = self._candidates(p, x, w, training, calibrate)
        ctx = tf.distribute.get_replica_context()
        if not (training and ctx is not None and ctx.num_replicas_in_sync > 1):
            return tf.switch_case(choice, candidates)
        if calibrate:  # every candidate would store the statistics of inputs it is not given
            raise SupernetError("BatchNorm calibration runs on one replica: call forward(calibrate=True) outside a "
                                "multi-replica strategy.run")
        return tf.gather(tf.stack([run() for run in candidates]), choice)

    def _mixed_path(self, p, x, w, weights, training, calibrate):
        """Soft mixing: Σ_n w_n · MP_n(x) over every candidate of MetaPath p."""
        fns = self._candidates(p, x, w, training, calibrate)
        out = weights[p, 0] * fns[0]() + weights[p, 2] * x
        if self.blocks_3d[p] is not None:
            out = out + weights[p, 1] * fns[1]()
        return out

    # ------------------------------------------------------------------ children
    def encode(self, arch: Arch) -> tuple[np.ndarray, np.ndarray]:
        """(widths, choices) int32 arrays of a sub-network, as `forward` takes them."""
        arch.validate(self.space)
        choices = [CANDIDATES.index(c) for stage in arch.choices for c in stage]
        return np.asarray(arch.widths, "int32"), np.asarray(choices, "int32")

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


# ---------------------------------------------------------------------- sub-networks
def child_model(supernet: Supernet, arch: Arch, name: str = "searched", calibration=None) -> EfficientFormer:
    """The `ef_keras.EfficientFormer` of `arch` at the supernet's input size, weights inherited.

    Channels are sliced from the front of every supernet tensor, as `Supernet.forward` does.
    Both classifier heads get the supernet's head, so the distilled model's averaged output
    equals the head's. With `calibration` images, BatchNorm statistics are then re-estimated
    on them (`recalibrate_batchnorm`).
    """
    arch.validate(supernet.space)
    config = arch.to_config(supernet.space, name=name)
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
    supernet's statistics no longer fit the sub-network (Once-for-All recalibrates them the
    same way). Uses training images, never a split that scores or tests.
    """
    norms = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
             if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in norms]
    for bn in norms:
        bn.momentum = 0.0  # moving = batch statistics exactly
    try:
        model(images, training=True)
    finally:
        for bn, m in zip(norms, saved):
            bn.momentum = m


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
    """Writes supernet.json (format, space, input size, classes) and the weights, atomically."""
    os.makedirs(directory, exist_ok=True)
    meta = {"format": FORMAT, "space": supernet.space.to_dict(), "image_size": supernet.image_size,
            "classes": supernet.classes, "mixing": supernet.mixing, **(extra or {})}
    with writing(os.path.join(directory, WEIGHTS_FILE)) as tmp:
        supernet.save_weights(tmp)
    write_json(os.path.join(directory, SUPERNET_JSON), meta)


def load_supernet(directory: str) -> tuple[Supernet, dict]:
    """Rebuilds a trained supernet from `directory`; SupernetError if missing, old or mismatched."""
    meta_path = os.path.join(directory, SUPERNET_JSON)
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    if not os.path.isfile(meta_path) or not os.path.isfile(weights_path):
        raise SupernetError(f"{directory} holds no trained supernet ({SUPERNET_JSON} + {WEIGHTS_FILE}); "
                            "train one with `python -m search.train_supernet --out DIR`")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SupernetError(f"{meta_path} is not a valid supernet description: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SupernetError(f"{directory} holds a supernet in an older format (ef-keras 0.2's single-width "
                            "supernet, whose narrower children were never trained): train a new one with "
                            "`python -m search.train_supernet --out NEW_DIR` (the old directory is left as it is)")
    try:
        space = SearchSpace.from_dict(meta["space"])
        image_size, classes, mixing = int(meta["image_size"]), int(meta["classes"]), meta.get("mixing", "hard")
    except (KeyError, TypeError, ValueError, SpaceError) as e:
        raise SupernetError(f"{meta_path} is not a valid supernet description: {e}") from e
    supernet = Supernet(space, image_size=image_size, classes=classes, mixing=mixing)
    try:
        supernet.load_weights(weights_path)
    except Exception as e:  # h5py/Keras raise many types for a corrupt or mismatched file
        raise SupernetError(f"{weights_path} does not match its {SUPERNET_JSON} "
                            f"(widths {list(space.max_widths)}, depths {list(space.depths)}): "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    return supernet, meta
