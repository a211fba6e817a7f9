"""Object detection on a pyramid backbone through keras-hub's RetinaNet, and COCO-style mAP.

Nothing here re-implements detection: `retinanet` builds keras-hub's own
`RetinaNetBackbone(image_encoder=backbone, ...)` (its FPN on P3-P5 plus P6/P7) and
`RetinaNetObjectDetector` (its anchors, label encoder, focal + Huber losses, box encoding and
NMS decoding). Any model with keras-hub's `pyramid_outputs` convention works as the backbone:
keras-hub's own `EfficientFormerBackbone` / `EfficientFormerV2Backbone` (`ef_keras.models.hub`), an
`EfficientFormer(..., include_top=False)` or a `segmentation.PyramidBackbone` such as
`mobilenet_v3_large_pyramid`. `coco_map` scores the decoded detections with pycocotools.

keras-hub 0.32 needs keras >= 3.15 and lists tensorflow-text, which pins `tensorflow` (not
`tensorflow-cpu`); keras-hub imports and runs without tensorflow-text (its tokenizers need
it, RetinaNet does not). Install with `pip install 'ef-keras[dense]'` (see setup.py).
"""

from __future__ import annotations

import numpy as np

from ef_keras.checks import check_int
from ef_keras.errors import EfKerasError, require


class DetectionError(EfKerasError):
    """Bad arguments for detection."""


def retinanet(backbone, num_classes: int, bounding_box_format: str = "xyxy", min_level: int = 3,
              max_level: int = 7, use_p5: bool = False, name: str = "retinanet"):
    """keras-hub's `RetinaNetObjectDetector` on `backbone`'s pyramid (P3-P5, plus P6/P7 from the FPN).

    Args:
        backbone: a keras.Model with `pyramid_outputs` {"P3", "P4", "P5", ...} and a static input shape.
        num_classes: object classes (no background class: RetinaNet's classifier is sigmoid).
        bounding_box_format: the format of the training boxes and of the predictions
            (keras-hub's names: "xyxy", "yxyx", "rel_xyxy", "center_xywh", ...).
        min_level, max_level, use_p5: keras-hub's `RetinaNetBackbone` arguments (RetinaNet paper: 3, 7).

    Compile with `detector.compile(...)` (keras-hub's defaults: focal loss, Huber box loss); on TF
    pass `jit_compile=False` on CPU (XLA compiles for minutes here).
    """
    keras_hub = require("keras_hub", "dense", "detection")
    num_classes = check_int("num_classes", num_classes, low=1, error=DetectionError)
    pyramid = getattr(backbone, "pyramid_outputs", None)
    if not isinstance(pyramid, dict) or not all(f"P{n}" in pyramid for n in range(min_level, min(max_level, 5) + 1)):
        raise DetectionError(f"backbone needs pyramid_outputs with P{min_level}..P{min(max_level, 5)} (keras-hub's "
                             f"FeaturePyramidBackbone convention), got {sorted(pyramid) if isinstance(pyramid, dict) else None}")
    image_shape = tuple(backbone.input_shape[1:])
    if any(d is None for d in image_shape[:2]):
        raise DetectionError(f"backbone input shape {image_shape} must be static for RetinaNet's anchors")
    encoder = keras_hub.models.RetinaNetBackbone(image_encoder=backbone, min_level=min_level, max_level=max_level,
                                                 use_p5=use_p5, image_shape=image_shape)
    return keras_hub.models.RetinaNetObjectDetector(backbone=encoder, num_classes=num_classes,
                                                    bounding_box_format=bounding_box_format, name=name)


def raw_heads(detector, concatenate: bool = False):
    """The detector before decoding as a plain functional model (what `predict` feeds to NMS).

    Outputs {"bbox_regression" (B, A, 4) center_xywh deltas, "cls_logits" (B, A, classes)} for
    the A anchors of keras-hub's AnchorGenerator; with `concatenate=True` one (B, A, 4 + classes)
    tensor instead (single-output models are what `deploy/convert.py` exports). Anchors and
    NMS stay on the host, as in keras-hub's own `predict`.
    """
    import keras

    boxes = detector.get_layer("bbox_regression").output
    logits = detector.get_layer("cls_logits").output
    if concatenate:
        outputs = keras.layers.Concatenate(axis=-1, name="raw_heads")([boxes, logits])
    else:
        outputs = {"bbox_regression": boxes, "cls_logits": logits}
    return keras.Model(detector.inputs, outputs, name=f"{detector.name}_raw_heads")


def coco_map(detections: dict, targets: dict, image_shape, max_detections: int = 100) -> dict:
    """COCO box AP (pycocotools) of decoded detections against ground truth, both "xyxy" pixels.

    Args:
        detections: keras-hub `predict` output {"boxes" (N, M, 4), "confidence" (N, M),
            "labels" (N, M), "num_detections" (N,)}.
        targets: {"boxes" (N, K, 4), "labels" (N, K)}, -1 padded.
        image_shape: (H, W) of the images.

    Returns {"map" (AP@[.5:.95]), "map50", "map75"}; -1 where pycocotools finds no ground truth.
    """
    coco_module = require("pycocotools.coco", "dense", "mAP")
    cocoeval = require("pycocotools.cocoeval", "dense", "mAP")
    h, w = image_shape
    images, annotations, results = [], [], []
    classes = set()
    for i in range(len(targets["labels"])):
        images.append({"id": i, "height": int(h), "width": int(w)})
        for box, label in zip(targets["boxes"][i], targets["labels"][i]):
            if label < 0:
                continue
            x0, y0, x1, y1 = (float(v) for v in box)
            classes.add(int(label))
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(label),
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        count = int(detections["num_detections"][i])
        for box, score, label in list(zip(detections["boxes"][i], detections["confidence"][i],
                                          detections["labels"][i]))[:min(count, max_detections)]:
            if label < 0:
                continue
            x0, y0, x1, y1 = (float(v) for v in box)
            results.append({"image_id": i, "category_id": int(label), "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "score": float(score)})
    truth = coco_module.COCO()
    truth.dataset = {"images": images, "annotations": annotations,
                     "categories": [{"id": c} for c in sorted(classes | {int(r["category_id"]) for r in results})]}
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
        if not results:
            return {"map": 0.0, "map50": 0.0, "map75": 0.0}
        predicted = truth.loadRes(results)
        evaluator = cocoeval.COCOeval(truth, predicted, "bbox")
        evaluator.params.maxDets = [1, 10, max_detections]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = np.asarray(evaluator.stats, dtype=float)
    return {"map": float(stats[0]), "map50": float(stats[1]), "map75": float(stats[2])}
