"""keras-hub classes: backbone, image classifier, preprocessor, converter, presets (offline).

Parity is against timm: the weights are the parity fixture's (timm's logits on seeded weights,
`fixtures/README.md`), written as a local directory laid out like timm's Hugging Face repository
(config.json + model.safetensors), and as huggingface_hub's cache holds that repository after a
download, so preset names and `hf://timm/` handles go through huggingface_hub itself. Nothing is
downloaded. Needs the `[dense]` extra (keras-hub); skipped without it.
"""

import json
import os
import shutil

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

import ef_keras
from deploy.testing import randomize_weights
from helpers import TINY, TINY_CONFIGS, TINY_INPUT, assert_config_complete, images

keras_hub = pytest.importorskip("keras_hub")

from ef_keras.models.hub import HubPresetError, timm_source  # noqa: E402

TOLERANCE = 1e-4
CLASSES = {"v1": (ef_keras.EfficientFormerBackbone, ef_keras.EfficientFormerImageClassifier,
                  ef_keras.EfficientFormerImageClassifierPreprocessor, ef_keras.EfficientFormerImageConverter),
           "v2": (ef_keras.EfficientFormerV2Backbone, ef_keras.EfficientFormerV2ImageClassifier,
                  ef_keras.EfficientFormerV2ImageClassifierPreprocessor, ef_keras.EfficientFormerV2ImageConverter)}


def _timm_repository(directory, architecture, state_dict):
    """A directory laid out like `huggingface.co/timm/<model>`: timm's config.json and model.safetensors."""
    os.makedirs(directory)
    config = {"architecture": architecture, "num_classes": 1000, "num_features": 448,
              "pretrained_cfg": {"input_size": [3, 224, 224], "interpolation": "bicubic", "crop_pct": 0.95,
                                 "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    save_file(state_dict, os.path.join(directory, "model.safetensors"))
    return str(directory)


@pytest.fixture(scope="module")
def l1_repository(parity_fixture, tmp_path_factory):
    fixture = parity_fixture("l1")
    return fixture, _timm_repository(tmp_path_factory.mktemp("hub") / "efficientformer_l1", "efficientformer_l1",
                                     fixture.state_dict("timm"))


@pytest.fixture(scope="module")
def hf_cache(l1_repository, tmp_path_factory):
    """The l1 repository as huggingface_hub's cache holds a download of `timm/efficientformer_l1.snap_dist_in1k`.

    huggingface_hub then serves `hf://timm/...` (and the preset name's handle) from it, offline: its
    constants are what HF_HUB_CACHE and HF_HUB_OFFLINE set when it is imported.
    """
    constants = pytest.importorskip("huggingface_hub.constants")
    cache = tmp_path_factory.mktemp("hf_cache")
    repo, commit = cache / "models--timm--efficientformer_l1.snap_dist_in1k", "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(l1_repository[1], repo / "snapshots" / commit)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_CACHE", str(cache))
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="module")
def l1_classifier(hf_cache):
    """The published preset by its keras-hub name: its handle, huggingface_hub, the checkpoint importer."""
    return ef_keras.EfficientFormerImageClassifier.from_preset("efficientformer_l1_imagenet")


def test_classifier_from_the_preset_name_matches_timm(l1_repository, l1_classifier):
    fixture, _ = l1_repository
    x = np.transpose(fixture.inputs(), (0, 2, 3, 1))  # already normalised: the model without its preprocessor
    logits = keras.Model(l1_classifier.input, l1_classifier.output).predict(x, verbose=0)
    np.testing.assert_allclose(logits, fixture.logits, atol=TOLERANCE)


def test_classifier_on_a_real_image_equals_the_ef_keras_prediction_path(l1_repository, l1_classifier):
    """Preprocessor (resize, crop 0.95, bicubic, mean/std) + classifier = eval_transform + preprocess_input + model."""
    matplotlib = pytest.importorskip("matplotlib")
    from PIL import Image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:  # 512x600 RGB photograph
        image = np.asarray(Image.open(f).convert("RGB"))
    model = ef_keras.EfficientFormerL1()
    ef_keras.load_weights_from_checkpoint(model, os.path.join(l1_repository[1], "model.safetensors"))
    expected = model.predict(ef_keras.preprocess_input(ef_keras.eval_transform(image, preset="l1")[None], "l1"),
                             verbose=0)
    got = l1_classifier.predict(image[None], verbose=0)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE)
    assert got.argmax() == expected.argmax()


def test_backbone_features_equal_the_family_model_features(l1_repository, hf_cache):
    _, repository = l1_repository
    backbone = ef_keras.EfficientFormerBackbone.from_preset("hf://timm/efficientformer_l1.snap_dist_in1k")
    model = ef_keras.EfficientFormer("l1", include_top=False, features_only=True)
    ef_keras.load_weights_from_checkpoint(model, os.path.join(repository, "model.safetensors"))
    x = images((224, 224, 3))
    expected = model.predict(x, verbose=0)
    got = keras.Model(backbone.input, backbone.pyramid_outputs).predict(x, verbose=0)
    assert sorted(got) == ["P2", "P3", "P4", "P5"]
    for level in got:
        np.testing.assert_allclose(got[level], expected[level], atol=1e-5, err_msg=level)
    np.testing.assert_allclose(backbone.predict(x, verbose=0), expected["P5"], atol=1e-5)


@pytest.mark.parametrize("family", ["v1", "v2"])
def test_backbone_config_round_trip_and_retinanet(family):
    backbone_cls = CLASSES[family][0]
    backbone = randomize_weights(backbone_cls(TINY_CONFIGS[family], image_shape=(128, 128, 3)))
    config = backbone.get_config()
    assert_config_complete(backbone_cls, config)
    clone = backbone_cls.from_config(config)
    assert type(clone) is backbone_cls and clone.get_config() == config
    assert clone.name == backbone.name  # keras-hub's naming: the class name's snake case (its test suite checks it)
    assert backbone.name.startswith({"v1": "efficient_former_backbone", "v2": "efficient_former_v2_backbone"}[family])
    half = backbone_cls(TINY_CONFIGS[family], image_shape=TINY_INPUT, dtype="mixed_float16")
    assert {layer.compute_dtype for layer in half._flatten_layers(include_self=False)} == {"float16"}
    assert {w.dtype for w in half.weights} == {"float32"} and half(images(TINY_INPUT)).dtype == "float16"
    assert keras.config.dtype_policy().name == "float32"  # restored
    # keras-hub's RetinaNet (`tasks.detection.retinanet`: its RetinaNetBackbone and RetinaNetObjectDetector)
    # takes the backbone unchanged: its FPN on P3-P5, heads on P3-P7.
    from ef_keras.tasks.detection import retinanet

    detector = retinanet(backbone, num_classes=3)
    assert detector.backbone.image_encoder is backbone
    heads = detector(images((128, 128, 3)), training=False)
    anchors = sum((128 // 2 ** level) ** 2 for level in range(3, 8)) * 9
    assert heads["bbox_regression"].shape == (2, anchors, 4) and heads["cls_logits"].shape == (2, anchors, 3)


@pytest.mark.parametrize("family", ["v1", "v2"])
def test_save_to_preset_round_trips(family, tmp_path):
    backbone_cls, classifier_cls, preprocessor_cls, converter_cls = CLASSES[family]
    converter = converter_cls(image_size=TINY_INPUT[:2], crop_pct=0.9, interpolation="bilinear",
                              scale=[1 / 255] * 3, offset=[-0.5] * 3)
    classifier = classifier_cls(randomize_weights(backbone_cls(TINY_CONFIGS[family], image_shape=TINY_INPUT)),
                                num_classes=4, preprocessor=preprocessor_cls(image_converter=converter))
    randomize_weights(classifier)
    x = np.random.default_rng(0).uniform(0, 255, (2, 80, 96, 3)).astype("float32")
    expected = classifier.predict(x, verbose=0)
    preset = tmp_path / "preset"
    classifier.save_to_preset(str(preset))
    assert {"config.json", "task.json", "model.weights.h5", "preprocessor.json", "image_converter.json"} <= set(
        os.listdir(preset))
    loader = {"v1": classifier_cls, "v2": keras_hub.models.ImageClassifier}[family]  # ours, and keras-hub's dispatch
    loaded = loader.from_preset(str(preset))
    assert type(loaded) is classifier_cls and loaded.preprocessor.image_converter.crop_pct == 0.9
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    backbone = keras_hub.models.Backbone.from_preset(str(preset))
    assert type(backbone) is backbone_cls
    inputs = images(TINY_INPUT)
    np.testing.assert_array_equal(backbone.predict(inputs, verbose=0), classifier.backbone.predict(inputs, verbose=0))
    classifier.save_to_preset(str(preset))  # our own preset directory is replaced
    with pytest.raises(HubPresetError, match="already exists; pass --overwrite"):
        classifier.save_to_preset(str(preset), overwrite=False)


def test_save_to_preset_never_replaces_a_user_directory(tmp_path):
    user = tmp_path / "photos"
    user.mkdir()
    (user / "holiday.jpg").write_bytes(b"mine")
    backbone = ef_keras.EfficientFormerBackbone(TINY, image_shape=TINY_INPUT)
    with pytest.raises(HubPresetError, match="a directory this tool did not write; it is left as it is") as e:
        backbone.save_to_preset(str(user))
    assert "\n" not in str(e.value)
    assert os.listdir(user) == ["holiday.jpg"] and (user / "holiday.jpg").read_bytes() == b"mine"
    assert sorted(os.listdir(tmp_path)) == ["photos"]  # no temp directory left behind
    with pytest.raises(HubPresetError, match="holiday.jpg is a file, not a preset directory; it is left as it is"):
        backbone.save_to_preset(str(user / "holiday.jpg"))
    assert (user / "holiday.jpg").read_bytes() == b"mine"


def test_every_published_weight_is_a_registered_preset():
    """The names resolve to timm's repositories without fetching anything (the handles are written out here)."""
    expected = {"efficientformer_l1_imagenet": "hf://timm/efficientformer_l1.snap_dist_in1k",
                "efficientformer_l3_imagenet": "hf://timm/efficientformer_l3.snap_dist_in1k",
                "efficientformer_l7_imagenet": "hf://timm/efficientformer_l7.snap_dist_in1k",
                "efficientformerv2_s0_imagenet": "hf://timm/efficientformerv2_s0.snap_dist_in1k",
                "efficientformerv2_s1_imagenet": "hf://timm/efficientformerv2_s1.snap_dist_in1k",
                "efficientformerv2_s2_imagenet": "hf://timm/efficientformerv2_s2.snap_dist_in1k",
                "efficientformerv2_l_imagenet": "hf://timm/efficientformerv2_l.snap_dist_in1k"}
    registered = {name: entry["kaggle_handle"] for name, entry in keras_hub.models.ImageClassifier.presets.items()
                  if name.startswith("efficientformer")}
    assert registered == expected
    v2 = {name for name in expected if name.startswith("efficientformerv2")}
    assert set(ef_keras.EfficientFormerBackbone.presets) == set(expected) - v2
    assert set(ef_keras.EfficientFormerV2ImageClassifier.presets) == v2
    assert timm_source(ef_keras.EfficientFormerImageClassifier, "efficientformer_l3_imagenet") == (
        "hf://timm/efficientformer_l3.snap_dist_in1k", "l3")


@pytest.mark.parametrize("family", ["v1", "v2"])
def test_converter_carries_the_preset(family):
    converter = CLASSES[family][3].from_preset({"v1": "efficientformer_l7_imagenet",
                                               "v2": "efficientformerv2_s2_imagenet"}[family])
    assert converter.image_size == (224, 224) and converter.crop_pct == 0.95 and converter.interpolation == "bicubic"
    image = np.random.default_rng(0).uniform(0, 255, (150, 200, 3)).astype("float32")
    expected = ef_keras.preprocess_input(ef_keras.eval_transform(image, preset="l1"))  # timm's ImageNet transform
    np.testing.assert_allclose(converter(image[None])[0], expected, atol=1e-5)
    np.testing.assert_allclose(converter(image), expected, atol=1e-5)


@pytest.mark.parametrize("pixels, message", [
    (np.zeros((2, 40, 40, 4)), r"ImageConverter expects \(H, W, 3\) or \(batch, H, W, 3\) RGB pixels, got shape "
                               r"\(2, 40, 40, 4\); drop the alpha channel"),
    (np.zeros((40, 40)), r"got shape \(40, 40\); a grey image needs 3 channels"),
    (np.full((1, 40, 40, 3), np.nan), "NaN, Inf or out-of-range pixel values"),
])
def test_converter_refuses_bad_images_in_one_line(pixels, message):
    converter = ef_keras.EfficientFormerImageConverter.from_preset("efficientformer_l1_imagenet")
    with pytest.raises(ef_keras.errors.InputError, match=message) as e:
        converter(pixels)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("cls, preset, message", [
    (ef_keras.EfficientFormerImageClassifier, "efficientformer_l2_imagenet",
     "unknown preset 'efficientformer_l2_imagenet': EfficientFormerImageClassifier has presets "
     "efficientformer_l1_imagenet, efficientformer_l3_imagenet, efficientformer_l7_imagenet"),
    (ef_keras.EfficientFormerBackbone, "resnet_50_imagenet", "unknown preset 'resnet_50_imagenet'"),
    (ef_keras.EfficientFormerImageClassifier, "efficientformerv2_s0_imagenet",
     "efficientformerv2_s0_imagenet is an EfficientFormerV2 preset, but EfficientFormerImageClassifier is an "
     r"EfficientFormer class; load it with EfficientFormerV2ImageClassifier.from_preset\("),
    (ef_keras.EfficientFormerV2Backbone, "efficientformer_l1_imagenet",
     r"EfficientFormer preset, but EfficientFormerV2Backbone .* EfficientFormerBackbone.from_preset"),
])
def test_bad_presets_get_one_line_errors(cls, preset, message):
    with pytest.raises(HubPresetError, match=message) as e:
        cls.from_preset(preset)
    assert "\n" not in str(e.value)
    assert isinstance(e.value, ef_keras.errors.EfKerasError)


def test_a_saved_preset_of_the_other_family_is_refused(tmp_path):
    ef_keras.EfficientFormerV2Backbone(TINY_CONFIGS["v2"], image_shape=TINY_INPUT).save_to_preset(str(tmp_path / "v2"))
    with pytest.raises(HubPresetError, match="is an EfficientFormerV2 preset, but EfficientFormerBackbone"):
        ef_keras.EfficientFormerBackbone.from_preset(str(tmp_path / "v2"))


def test_a_timm_repository_of_the_other_family_is_refused(tmp_path):
    repository = _timm_repository(tmp_path / "s0", "efficientformerv2_s0", {"x": np.zeros(1, "float32")})
    with pytest.raises(HubPresetError, match="is an EfficientFormerV2 preset, but EfficientFormerImageClassifier"):
        ef_keras.EfficientFormerImageClassifier.from_preset(repository)


def test_new_heads_keep_the_timm_backbone(l1_repository, l1_classifier):
    fine_tune = ef_keras.EfficientFormerImageClassifier.from_preset(l1_repository[1], num_classes=10)
    assert fine_tune.output_shape == (None, 10)
    for ours, timm in zip(fine_tune.backbone.weights, l1_classifier.backbone.weights):
        np.testing.assert_array_equal(ours.numpy(), timm.numpy(), err_msg=ours.path)


def test_a_timm_repository_at_another_input_size_feeds_retinanet(l1_repository):
    from ef_keras.tasks.detection import retinanet

    with pytest.warns(UserWarning, match="resized the attention bias tables"):
        backbone = ef_keras.EfficientFormerBackbone.from_preset(l1_repository[1], image_shape=(128, 128, 3))
    heads = retinanet(backbone, num_classes=80)(images((128, 128, 3)), training=False)
    assert heads["cls_logits"].shape == (2, sum((128 // 2 ** level) ** 2 for level in range(3, 8)) * 9, 80)


def test_preset_names_build_their_architecture_without_weights():
    """`load_weights=False` needs no download: the name alone gives the variant, its heads and its converter."""
    classifier = ef_keras.EfficientFormerV2ImageClassifier.from_preset("efficientformerv2_s1_imagenet",
                                                                       load_weights=False)
    assert classifier.backbone.config == ef_keras.V2_VARIANTS["s1"]  # not the class's default (s0)
    assert classifier.output_shape == (None, 1000) and classifier.distillation
    converter = classifier.preprocessor.image_converter
    assert (converter.image_size, converter.crop_pct, converter.interpolation) == ((224, 224), 0.95, "bicubic")
    backbone = ef_keras.EfficientFormerBackbone.from_preset("efficientformer_l3_imagenet", load_weights=False)
    assert backbone.config == ef_keras.VARIANTS["l3"] and backbone.output_shape == (None, 7, 7, 512)
    with pytest.raises(ef_keras.ModelArgumentError, match="needs an EfficientFormerBackbone, got EfficientFormerV2"):
        ef_keras.EfficientFormerImageClassifier(classifier.backbone, num_classes=3)
