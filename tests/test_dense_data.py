"""The dense-task compositor: labels agree with the pixels, boxes are tight, runs repeat, bad input fails."""

import numpy as np
import pytest

from ef_keras.tasks.dense_data import PAD, DenseDataError, compose


@pytest.fixture(scope="module")
def digits():
    return compose("digits", "train", num_images=40, canvas_size=(48, 40), max_objects=4, scale=(1.5, 3.0),
                   threshold=40, seed=3)


def test_shapes_and_dtypes(digits):
    assert digits.images.shape == (40, 48, 40, 3) and digits.images.dtype == np.uint8
    assert digits.masks.shape == (40, 48, 40) and digits.masks.dtype == np.uint8
    assert digits.boxes.shape == (40, 4, 4) and digits.box_labels.shape == (40, 4)
    assert digits.num_seg_classes == 11
    assert not digits.images.flags.writeable


def test_mask_is_exactly_the_pixels_above_threshold(digits):
    # Pasted object pixels are > threshold, background noise and the scans' dark surround <= threshold.
    grey = digits.images[..., 0]
    assert (digits.images == grey[..., None]).all()
    np.testing.assert_array_equal(digits.masks > 0, grey > 40)
    assert digits.masks.max() <= 10


def test_boxes_are_tight_disjoint_and_cover_the_mask(digits):
    objects = 0
    for image in range(len(digits)):
        covered = np.zeros(digits.masks.shape[1:], bool)
        rows = [k for k in range(4) if digits.box_labels[image, k] != PAD]
        assert rows == list(range(len(rows))), "padding only at the end"
        assert (digits.boxes[image, len(rows):] == PAD).all()
        for k in rows:
            x0, y0, x1, y1 = digits.boxes[image, k].astype(int)
            assert 0 <= x0 < x1 <= 40 and 0 <= y0 < y1 <= 48
            window = digits.masks[image, y0:y1, x0:x1]
            values = set(np.unique(window)) - {0}
            assert values == {digits.box_labels[image, k] + 1}, "one class per box (no occlusion)"
            # tight: the mask touches all four edges of its box
            assert window[0].any() and window[-1].any() and window[:, 0].any() and window[:, -1].any()
            assert not covered[y0:y1, x0:x1].any(), "boxes do not overlap"
            covered[y0:y1, x0:x1] = True
            objects += 1
        assert not (digits.masks[image] > 0)[~covered].any(), "every mask pixel lies in a box"
    assert objects > len(digits)  # several canvases hold more than one object


def test_all_classes_appear_and_counts_vary():
    data = compose("digits", "train", num_images=60, canvas_size=(48, 48), max_objects=3, scale=(2, 3), seed=0)
    assert set(np.unique(data.masks)) == set(range(11))
    per_image = (data.box_labels != PAD).sum(1)
    assert per_image.min() == 1 and per_image.max() == 3


def test_deterministic_per_seed():
    a = compose("digits", "validation", num_images=6, canvas_size=(32, 32), scale=(1, 2), seed=7)
    b = compose("digits", "validation", num_images=6, canvas_size=(32, 32), scale=(1, 2), seed=7)
    c = compose("digits", "validation", num_images=6, canvas_size=(32, 32), scale=(1, 2), seed=8)
    for name in ("images", "masks", "boxes", "box_labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.masks, c.masks)


def test_fashion_subset_source():
    data = compose("embedded", "train", num_images=4, canvas_size=(96, 96), scale=(1, 1.5), seed=0)
    assert data.images.shape == (4, 96, 96, 3)
    assert (data.masks > 0).mean() > 0.03


def test_detection_targets_are_keras_hub_shaped(digits):
    targets = digits.detection_targets()
    assert set(targets) == {"boxes", "labels"}
    assert targets["boxes"].shape[:2] == targets["labels"].shape


@pytest.mark.parametrize("kwargs, message", [
    (dict(source="cifar"), "source must be one of"),
    (dict(num_images=0), "num_images must be a positive integer"),
    (dict(max_objects=True), "max_objects must be a positive integer"),
    (dict(canvas_size=(16, 16), scale=(1, 3)), "does not fit"),
    (dict(scale=(3, 1)), "low <= high"),
    (dict(scale=(0.1, 1)), "at least 2 px"),
    (dict(threshold=255), "threshold must be an integer >= 0 and <= 254"),
    (dict(canvas_size=32), "must be pairs"),
    (dict(split="dev"), "splits 'train' and 'validation'"),
])
def test_bad_arguments_give_one_line_errors(kwargs, message):
    args = dict(source="digits", num_images=2, canvas_size=(32, 32), scale=(1, 2))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message) as info:
        compose(**args)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, DenseDataError) or type(info.value).__name__ == "DatasetError"
