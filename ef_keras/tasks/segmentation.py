"""Semantic segmentation on any pyramid backbone: the Semantic FPN of the paper's ADE20K setting.

`SemanticFPN(backbone, num_classes)` puts the FPN neck (Lin et al. 2017) and the Semantic
FPN head (Kirillov et al., "Panoptic Feature Pyramid Networks", 2019) on a backbone that
follows keras-hub's `FeaturePyramidBackbone` convention: a `keras.Model` with a
`pyramid_outputs` dict {"P2": ..., "P5": ...}, Pn at stride 2^n. EfficientFormer built with
pyramid outputs is one; `PyramidBackbone` wraps any other functional model (e.g.
`mobilenet_v3_large_pyramid`) the same way.

Architecture (mmseg's `FPN` + `FPNHead`, which the EfficientFormer authors used through
mmseg 0.19's `fpn_r50` config):

- neck: a 1x1 lateral conv per level to `fpn_channels` (256), top-down pathway (nearest x2
  upsampling + add, coarse to fine), a 3x3 output conv per level; convs with bias, no norm;
- head: per level Pn, max(1, n - 2) stages of [3x3 conv (`head_channels`, 128, no bias) ->
  norm -> ReLU], each but P2's followed by bilinear x2 upsampling, so every level reaches
  stride 4; the four maps are summed, dropout (0.1), a 1x1 classifier, and bilinear x4
  upsampling to the input size. Norm is BatchNorm (mmseg's config; eps 1e-5, momentum
  0.9 in Keras terms) or GroupNorm(32) (Kirillov et al.).

Outputs are logits (B, H, W, num_classes). Inputs are whatever the backbone takes (for
EfficientFormer and the MobileNetV3 wrapper here: ImageNet mean/std normalised RGB).
`mean_iou` evaluates with `keras.metrics.MeanIoU` (classes absent from both the labels and
the predictions are left out of the mean, as mmseg does). `ade20k_dataset` reads
ADE20K (tfds `scene_parse150`) from a prepared data directory, never downloading.
"""

from __future__ import annotations

import numpy as np
import keras

from ef_keras.checks import check_int, check_number
from ef_keras.errors import EfKerasError

#: Pyramid levels the head uses, fine to coarse; Pn has stride 2^n.
LEVELS = ("P2", "P3", "P4", "P5")
BN_EPSILON, BN_MOMENTUM = 1e-5, 0.9
#: Label value that no loss or metric counts (ADE20K's "other" after mmseg's reduce_zero_label).
IGNORE_LABEL = 255


class SegmentationError(EfKerasError):
    """Bad arguments or labels for the segmentation model, data or evaluation."""


@keras.saving.register_keras_serializable(package="ef_keras")
class PyramidBackbone(keras.Model):
    """A functional model whose outputs are the pyramid dict, exposed as `pyramid_outputs`.

    This is keras-hub's `FeaturePyramidBackbone` convention without depending on keras-hub:
    `keras.Model(backbone.inputs, backbone.pyramid_outputs)` works, and so do `SemanticFPN`
    and keras-hub's `RetinaNetBackbone(image_encoder=...)`.

    Args:
        inputs: the image input(s) of an existing functional model.
        outputs: {"P2": tensor, ..., "P5": tensor} from the same graph, Pn at stride 2^n.
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):  # Functional's signature: its get_config applies
        if not isinstance(outputs, dict) or not outputs or any(
                not (isinstance(k, str) and k[:1] == "P" and k[1:].isdigit()) for k in outputs):
            raise SegmentationError(f"outputs must be a dict {{'P2': ..., 'P5': ...}}, got "
                                    f"{list(outputs) if isinstance(outputs, dict) else type(outputs).__name__}")
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.pyramid_outputs = dict(outputs)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from keras.src.models.functional import functional_from_config

        return functional_from_config(cls, config, custom_objects=custom_objects)


#: MobileNetV3-Large block outputs at strides 4, 8 and 16 (the last block before each stride-2
#: block, as torchvision's detection/segmentation extractors take them); P5 is the final 960-channel map.
MOBILENET_V3_LARGE_TAPS = {"P2": "expanded_conv_2_add", "P3": "expanded_conv_5_add", "P4": "expanded_conv_11_add"}


def mobilenet_v3_large_pyramid(input_shape=(224, 224, 3), weights=None, name="mobilenet_v3_large_pyramid"):
    """keras.applications' MobileNetV3-Large (minimalistic=False, alpha 1) as a P2-P5 `PyramidBackbone`.

    Its built-in rescaling is off (`include_preprocessing=False`): it takes the same
    ImageNet-normalised input as EfficientFormer, so the two backbones see identical data.
    """
    model = keras.applications.MobileNetV3Large(input_shape=tuple(input_shape), include_top=False, weights=weights,
                                                include_preprocessing=False)
    outputs = {level: model.get_layer(layer).output for level, layer in MOBILENET_V3_LARGE_TAPS.items()}
    outputs["P5"] = model.output
    return PyramidBackbone(model.input, outputs, name=name)


@keras.saving.register_keras_serializable(package="ef_keras")
class Upsample(keras.layers.Layer):
    """Integer-factor upsampling, "nearest" (each pixel copied to a factor x factor block, as
    PyTorch's `F.interpolate(scale_factor=f)`) or "bilinear" (half-pixel centres, PyTorch's
    `align_corners=False`).

    Why not `UpSampling2D`: its nearest mode lowers to TILE ops and a nearest resize is a
    RESIZE_NEAREST_NEIGHBOR op, neither of which XNNPACK delegates (nor `deploy.mil_eval`
    evaluates). Here nearest is a reshape to (B·H, 1, W, 1, C), a broadcast multiply by ones
    (f x f copies) and a reshape back, which every format runs natively; bilinear is one
    image resize (RESIZE_BILINEAR / upsample_bilinear). Sizes are read at run time when unknown.
    """

    def __init__(self, factor=2, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        if interpolation not in ("nearest", "bilinear"):
            raise SegmentationError(f"interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
        self.factor, self.interpolation = int(factor), interpolation

    def call(self, x):
        f = self.factor
        h, w, c = x.shape[1], x.shape[2], x.shape[3]
        if h is None or w is None:
            shape = keras.ops.shape(x)
            h, w = shape[1], shape[2]
        if self.interpolation == "bilinear":
            return keras.ops.image.resize(x, (h * f, w * f), interpolation="bilinear")
        blocks = keras.ops.reshape(x, (-1, 1, w, 1, c)) * keras.ops.ones((1, f, 1, f, 1), dtype=x.dtype)
        return keras.ops.reshape(blocks, (-1, h * f, w * f, c))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else h * self.factor, None if w is None else w * self.factor, c)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "interpolation": self.interpolation}


def _norm(kind: str, name: str):
    if kind == "batch":
        return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)
    return keras.layers.GroupNormalization(groups=32, epsilon=BN_EPSILON, name=name)


def _check_backbone(backbone):
    pyramid = getattr(backbone, "pyramid_outputs", None)
    if not isinstance(backbone, keras.Model) or not isinstance(pyramid, dict):
        raise SegmentationError(
            f"backbone must be a keras.Model with a pyramid_outputs dict {{'P2'..'P5'}} (keras-hub's "
            f"FeaturePyramidBackbone convention), got {type(backbone).__name__}; build EfficientFormer with "
            "pyramid outputs, or wrap a model in ef_keras.tasks.segmentation.PyramidBackbone")
    missing = [level for level in LEVELS if level not in pyramid]
    if missing:
        raise SegmentationError(f"backbone.pyramid_outputs lacks {', '.join(missing)} (has {sorted(pyramid)}); "
                                "Semantic FPN needs P2, P3, P4 and P5")


@keras.saving.register_keras_serializable(package="ef_keras")
class SemanticFPN(keras.Model):
    """Semantic FPN (Kirillov et al. 2019) on a pyramid backbone; outputs per-pixel logits.

    Args:
        backbone: a keras.Model with `pyramid_outputs` {"P2", "P3", "P4", "P5"} (an
            EfficientFormer with pyramid outputs, a `PyramidBackbone`, or a keras-hub
            `FeaturePyramidBackbone`).
        num_classes: output classes (ADE20K: 150).
        fpn_channels: FPN neck width (mmseg 256).
        head_channels: head width (mmseg 128).
        norm: "batch" (mmseg's config) or "group" (GroupNorm(32), Kirillov et al.).
        dropout: dropout before the classifier (mmseg 0.1).
        name: model name.

    Example:
        >>> import numpy as np
        >>> from ef_keras.tasks.segmentation import SemanticFPN, mobilenet_v3_large_pyramid
        >>> model = SemanticFPN(mobilenet_v3_large_pyramid((64, 64, 3)), num_classes=5)
        >>> model.predict(np.zeros((1, 64, 64, 3)), verbose=0).shape
        (1, 64, 64, 5)
    """

    def __init__(self, backbone, num_classes, fpn_channels=256, head_channels=128, norm="batch", dropout=0.1,
                 name="semantic_fpn", **kwargs):
        _check_backbone(backbone)
        num_classes = check_int("num_classes", num_classes, low=1, error=SegmentationError)
        fpn_channels = check_int("fpn_channels", fpn_channels, low=1, error=SegmentationError)
        head_channels = check_int("head_channels", head_channels, low=1, error=SegmentationError)
        dropout = check_number("dropout", dropout, low=0, high=1, high_open=True, error=SegmentationError)
        if norm not in ("batch", "group"):
            raise SegmentationError(f"norm must be 'batch' or 'group', got {norm!r}")
        if norm == "group" and head_channels % 32:
            raise SegmentationError(f"norm='group' uses 32 groups: head_channels must be a multiple of 32, "
                                    f"got {head_channels}")

        extractor = keras.Model(backbone.inputs, {level: backbone.pyramid_outputs[level] for level in LEVELS},
                                name="pyramid")
        image = keras.Input(shape=backbone.input_shape[1:], name="image")
        features = extractor(image)

        # FPN neck: laterals, top-down pathway (nearest x2 + add), 3x3 output convs.
        laterals = {level: keras.layers.Conv2D(fpn_channels, 1, name=f"fpn_lateral_{level}")(features[level])
                    for level in LEVELS}
        merged = {LEVELS[-1]: laterals[LEVELS[-1]]}
        for fine, coarse in zip(LEVELS[-2::-1], LEVELS[:0:-1]):
            up = Upsample(2, "nearest", name=f"fpn_up_{coarse}")(merged[coarse])
            merged[fine] = keras.layers.Add(name=f"fpn_merge_{fine}")([laterals[fine], up])
        pyramid = {level: keras.layers.Conv2D(fpn_channels, 3, padding="same", name=f"fpn_output_{level}")(
            merged[level]) for level in LEVELS}

        # Semantic FPN head: every level to stride 4 (conv-norm-ReLU [+ x2 bilinear] stages), summed.
        scaled = []
        for n, level in enumerate(LEVELS):
            x = pyramid[level]
            for stage in range(max(1, n)):
                prefix = f"head_{level}_{stage}"
                x = keras.layers.Conv2D(head_channels, 3, padding="same", use_bias=False, name=f"{prefix}_conv")(x)
                x = _norm(norm, f"{prefix}_norm")(x)
                x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
                if n:
                    x = Upsample(2, "bilinear", name=f"{prefix}_up")(x)
            scaled.append(x)
        x = keras.layers.Add(name="head_sum")(scaled)
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
        x = keras.layers.Conv2D(num_classes, 1, name="classifier")(x)
        logits = Upsample(4, "bilinear", name="logits", dtype="float32")(x)

        super().__init__(inputs=image, outputs=logits, name=name, **kwargs)
        self.backbone = backbone
        self.num_classes = num_classes
        self.fpn_channels, self.head_channels = fpn_channels, head_channels
        self.norm, self.dropout = norm, dropout

    def get_config(self):
        return {"backbone": keras.layers.serialize(self.backbone), "num_classes": self.num_classes,
                "fpn_channels": self.fpn_channels, "head_channels": self.head_channels, "norm": self.norm,
                "dropout": self.dropout, "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"], custom_objects=custom_objects)
        return cls(**config)


# --------------------------------------------------------------------------- labels and metrics
def check_labels(masks, num_classes: int, ignore_label: int | None = IGNORE_LABEL) -> np.ndarray:
    """Returns integer label maps as an int32 array; any value outside [0, num_classes) (other than
    `ignore_label`) raises a one-line `SegmentationError` naming the value and where it is."""
    masks = np.asarray(masks)
    if masks.dtype.kind not in "iu":
        raise SegmentationError(f"label maps must be integer class ids, got dtype {masks.dtype}")
    bad = (masks < 0) | (masks >= num_classes)
    if ignore_label is not None:
        bad &= masks != ignore_label
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        values = np.unique(masks[bad])
        raise SegmentationError(
            f"label map has class {int(values.max() if values.max() >= num_classes else values.min())} at index "
            f"{where} but the model has num_classes={num_classes} (valid 0..{num_classes - 1}"
            f"{'' if ignore_label is None else f', {ignore_label} = ignored'}); "
            f"{len(values)} bad value(s): {values[:5].tolist()}")
    return masks.astype("int32")


def mean_iou(model, images, masks=None, num_classes: int | None = None, batch_size: int = 8,
             ignore_label: int | None = IGNORE_LABEL) -> dict:
    """mIoU of `model`'s per-pixel argmax, with the per-class IoUs and the pixel accuracy.

    Data: arrays `images` (N, H, W, 3) and `masks` (N, H, W), or (with `masks=None`) an
    iterable of (images, labels) batches such as `ade20k_dataset(...)`. Every label batch is
    checked with `check_labels` first. Uses `keras.metrics.MeanIoU` (its confusion matrix
    gives the per-class values); pixels labelled `ignore_label` are not counted, and classes
    that occur neither in the labels nor in the predictions are left out of the mean (as
    mmseg's nanmean). Returns {"miou", "per_class" (NaN for absent classes), "pixel_accuracy"}.
    """
    num_classes = num_classes or model.output_shape[-1]
    if masks is None:
        batches = ((np.asarray(x), np.asarray(y)) for x, y in images)
    else:
        if len(images) != len(masks):
            raise SegmentationError(f"{len(images)} images but {len(masks)} label maps")
        batches = ((images[i:i + batch_size], masks[i:i + batch_size]) for i in range(0, len(images), batch_size))
    metric = keras.metrics.MeanIoU(num_classes=num_classes, sparse_y_true=True, sparse_y_pred=True,
                                   ignore_class=ignore_label)
    for x, y in batches:
        y = check_labels(y, num_classes, ignore_label)
        logits = model.predict_on_batch(np.asarray(x, "float32"))
        metric.update_state(y, np.argmax(logits, axis=-1))
    cm = np.asarray(metric.total_cm, dtype="float64")
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(union > 0, np.diag(cm) / union, np.nan)
    return {"miou": float(metric.result()), "per_class": per_class.tolist(),
            "pixel_accuracy": float(np.diag(cm).sum() / max(cm.sum(), 1))}


# --------------------------------------------------------------------------- ADE20K through tfds
#: tfds name of ADE20K (MIT Scene Parsing, 150 classes); its "test" split is ADE20K's 2,000 validation images.
ADE20K = "scene_parse150"
ADE20K_CLASSES = 150


def ade20k_dataset(split: str = "test", data_dir=None, image_size: int = 512, batch_size: int = 4,
                   training: bool = False, seed: int = 0):
    """ADE20K (tfds `scene_parse150`) as (normalised images, int32 labels) batches; never downloads.

    The data must already be prepared in `data_dir` (on a connected machine: `tfds build
    scene_parse150 --data_dir DIR`, then copy DIR here); otherwise a one-line error says so.
    Labels follow mmseg's `reduce_zero_label`: ADE20K's 0 ("other") becomes `IGNORE_LABEL`
    and classes 1-150 become 0-149. Images and labels are resized so the short side is
    `image_size` (bilinear / nearest), then cropped to image_size x image_size: a random
    crop and flip for training (stateless, keyed by `seed`), the centre crop otherwise
    (a simplification of mmseg's sliding/whole-image test, which keeps the full image).
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from ef_keras.data import normalize

    image_size = check_int("image_size", image_size, low=32, error=SegmentationError)
    batch_size = check_int("batch_size", batch_size, low=1, error=SegmentationError)
    where = data_dir or "~/tensorflow_datasets"
    builder = tfds.builder(ADE20K, data_dir=data_dir)
    try:
        ds = builder.as_dataset(split=split, shuffle_files=training, read_config=tfds.ReadConfig(shuffle_seed=seed))
    except AssertionError as e:
        raise SegmentationError(
            f"ADE20K ({ADE20K}) is not prepared in {where}: run `tfds build {ADE20K} --data_dir DIR` on a connected "
            "machine and copy DIR here (pass it as data_dir); nothing is downloaded") from e
    except ValueError as e:
        raise SegmentationError(f"{ADE20K} has no split {split!r} (splits: train, test): "
                                f"{str(e).splitlines()[0]}") from e

    def prepare(index, example):
        image = tf.cast(example["image"], tf.float32)
        label = tf.cast(example["annotation"][..., :1], tf.int32)
        tf.debugging.assert_less_equal(tf.reduce_max(label), ADE20K_CLASSES,
                                       message=f"ADE20K annotation value above {ADE20K_CLASSES}")
        label = tf.where(label == 0, IGNORE_LABEL, label - 1)
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        new = tf.maximum(tf.cast(tf.round(shape * (image_size / tf.reduce_min(shape))), tf.int32), image_size)
        image = tf.image.resize(image, new, method="bilinear")
        label = tf.image.resize(label, new, method="nearest")
        both = tf.concat([image, tf.cast(label, tf.float32)], axis=-1)
        if training:
            key = tf.stack([tf.constant(seed, tf.int64), index])
            both = tf.image.stateless_random_crop(both, (image_size, image_size, 4), seed=key)
            both = tf.image.stateless_random_flip_left_right(both, seed=key + 1)
        else:
            top, left = (new[0] - image_size) // 2, (new[1] - image_size) // 2
            both = both[top:top + image_size, left:left + image_size]
        both = tf.ensure_shape(both, (image_size, image_size, 4))
        return normalize(both[..., :3]), tf.cast(both[..., 3], tf.int32)

    if training:
        ds = ds.shuffle(256, seed=seed)
    ds = ds.enumerate().map(tf.autograph.experimental.do_not_convert(prepare), num_parallel_calls=tf.data.AUTOTUNE,
                            deterministic=True)
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- export
def pack_pyramid(backbone, levels=LEVELS):
    """A single-output model of `backbone`'s pyramid for export, and the layout to unpack it.

    TFLite/Core ML/ONNX handle several outputs, but their output order and names differ per
    format; `deploy/convert.py` verifies one output tensor. This puts each level's map,
    flattened row-major (H, W, C), one after another in one (B, total) tensor, so every value
    of every level is converted and verified. `unpack_pyramid(flat, layout)` restores the dict.

    Returns (model, layout) with layout [(level, (H, W, C), offset)].
    """
    _check_backbone(backbone)
    parts, layout, offset = [], [], 0
    for level in levels:
        tensor = backbone.pyramid_outputs[level]
        shape = tuple(tensor.shape[1:])
        if any(d is None for d in shape):
            raise SegmentationError(f"{level} has shape {shape}: packing needs a static input size")
        parts.append(keras.layers.Reshape((-1,), name=f"flat_{level}")(tensor))
        layout.append((level, shape, offset))
        offset += int(np.prod(shape))
    packed = keras.layers.Concatenate(axis=1, name="pyramid")(parts)
    return keras.Model(backbone.inputs, packed, name=f"{backbone.name}_pyramid"), layout


def unpack_pyramid(flat, layout) -> dict:
    """{level: (B, H, W, C)} from `pack_pyramid`'s (B, total) output."""
    flat = np.asarray(flat)
    return {level: flat[:, offset:offset + int(np.prod(shape))].reshape(-1, *shape) for level, shape, offset in layout}
