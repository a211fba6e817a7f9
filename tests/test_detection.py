"""keras-hub's RetinaNet on our pyramid backbones (build, train, predict, raw heads) and COCO mAP.

Needs the `[dense]` extra (keras-hub, pycocotools); skipped without it.
"""

import numpy as np
import pytest

import ef_keras
from helpers import TINY

keras_hub = pytest.importorskip("keras_hub")
pytest.importorskip("pycocotools")

from ef_keras.tasks.detection import DetectionError, coco_map, raw_heads, retinanet  # noqa: E402


def _targets():
    boxes = np.array([[[10, 10, 40, 50], [60, 20, 90, 40]], [[5, 5, 30, 30], [-1, -1, -1, -1]]], "float32")
    labels = np.array([[1, 3], [2, -1]], "int32")
    return {"boxes": boxes, "labels": labels}


def _detections(boxes, labels, scores):
    return {"boxes": boxes, "labels": labels, "confidence": scores,
            "num_detections": (labels >= 0).sum(1).astype("int32")}


def test_coco_map_of_perfect_shifted_and_missing_detections():
    t = _targets()
    perfect = coco_map(_detections(t["boxes"], t["labels"], np.where(t["labels"] >= 0, 0.9, -1.0)), t, (100, 100))
    assert perfect == pytest.approx({"map": 1.0, "map50": 1.0, "map75": 1.0})
    shifted = t["boxes"] + np.where(t["labels"][..., None] >= 0, 4.0, 0.0)  # IoU ~0.6-0.75: found at .5, not all at .75
    partly = coco_map(_detections(shifted, t["labels"], np.where(t["labels"] >= 0, 0.9, -1.0)), t, (100, 100))
    assert partly["map50"] == pytest.approx(1.0) and partly["map"] < 0.7
    wrong_class = coco_map(_detections(t["boxes"], np.where(t["labels"] >= 0, 7, -1),
                                       np.where(t["labels"] >= 0, 0.9, -1.0)), t, (100, 100))
    assert wrong_class["map"] == 0.0


@pytest.mark.slow  # ~70 s on 2 cores: keras-hub's label encoder and NMS graphs take long to trace
def test_retinanet_on_efficientformer_trains_and_predicts():
    from ef_keras.tasks.dense_data import compose
    from ef_keras.data import normalize

    data = compose("digits", "train", num_images=4, canvas_size=(128, 128), scale=(3, 6), seed=0)
    backbone = ef_keras.EfficientFormer(TINY, include_top=False, input_shape=(128, 128, 3))
    detector = retinanet(backbone, num_classes=10)
    detector.compile(jit_compile=False)
    x = np.asarray(normalize(data.images.astype("float32")))
    history = detector.fit(x, data.detection_targets(), batch_size=2, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    out = detector.predict(x[:2], verbose=0)
    assert out["boxes"].shape == (2, 100, 4) and out["labels"].shape == (2, 100)
    heads = raw_heads(detector).predict(x[:1], verbose=0)
    anchors = sum((128 // 2 ** level) ** 2 for level in range(3, 8)) * 9
    assert heads["bbox_regression"].shape == (1, anchors, 4) and heads["cls_logits"].shape == (1, anchors, 10)
    single = raw_heads(detector, concatenate=True).predict(x[:1], verbose=0)
    np.testing.assert_array_equal(single, np.concatenate([heads["bbox_regression"], heads["cls_logits"]], -1))
    # keras-hub's decoded detections, used as the ground truth, score a perfect AP (the metric's definition),
    # so coco_map reads the detector's output as it reads targets. An untrained detector also decodes
    # degenerate boxes (zero or negative width or height, which match nothing): those are left out of both.
    boxes = out["boxes"]
    kept = ((np.arange(boxes.shape[1])[None] < out["num_detections"][:, None])
            & (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1]))
    assert kept.sum() >= 10, out["num_detections"]
    labels = np.where(kept, out["labels"], -1)
    detections = {**out, "labels": labels}
    assert coco_map(detections, {"boxes": boxes, "labels": labels}, (128, 128)) == pytest.approx(
        {"map": 1.0, "map50": 1.0, "map75": 1.0})


def test_backbone_without_pyramid_is_refused():
    model = ef_keras.EfficientFormer(TINY, input_shape=(128, 128, 3), classes=3)
    with pytest.raises(ef_keras.ModelArgumentError, match="include_top=True"):
        retinanet(model, num_classes=3)
    with pytest.raises(DetectionError, match="num_classes"):
        retinanet(ef_keras.EfficientFormer(TINY, include_top=False, input_shape=(128, 128, 3)), num_classes=0)
