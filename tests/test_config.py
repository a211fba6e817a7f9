"""Architecture configs: the JSON round trip of every family, EfficientFormerConfig's variants and validation."""

import json

import pytest

from ef_keras.models.config import ConfigError
from ef_keras.models.efficientformer.config import VARIANTS, EfficientFormerConfig, get_config
from ef_keras.models.efficientformer_v2.config import V2_VARIANTS
from ef_keras.registry import architecture, list_models, registered


@pytest.mark.parametrize("name", list_models())
def test_every_variant_round_trips_through_json(name, tmp_path):
    cfg = registered(name).config
    assert type(cfg).from_json(cfg.to_json()) == cfg
    path = tmp_path / f"{name}.json"
    cfg.save(str(path))
    assert type(cfg).load(str(path)) == cfg and architecture(str(path)) == cfg
    assert json.loads(path.read_text())["family"] == registered(name).family


def test_json_written_by_0_2_reads_the_same():
    """0.2 wrote V1 architectures without a family and V2 ones as "efficientformer_v2" (the search's files, .keras)."""
    v1 = {k: v for k, v in VARIANTS["l1"].to_dict().items() if k != "family"}
    v2 = {**V2_VARIANTS["s0"].to_dict(), "family": "efficientformer_v2"}
    assert architecture(v1) == VARIANTS["l1"] and architecture(v2) == V2_VARIANTS["s0"]
    with pytest.raises(ConfigError, match="this is a 'v2' architecture, not EfficientFormer;"):
        EfficientFormerConfig.from_dict(v2)


def test_variant_table_matches_paper():
    assert VARIANTS["l1"].widths == (48, 96, 224, 448) and VARIANTS["l1"].depths == (3, 2, 6, 4)
    assert (VARIANTS["l1"].num_vit, VARIANTS["l3"].num_vit, VARIANTS["l7"].num_vit) == (1, 4, 8)
    assert VARIANTS["l7"].num_4d_last == 0 and VARIANTS["l1"].stem_widths == (24, 48)


@pytest.mark.parametrize("alias", ["l1", "L1", "efficientformer_l1", "EfficientFormer-L1"])
def test_get_config_aliases(alias):
    assert get_config(alias) is VARIANTS["l1"]


def test_search_style_config_is_accepted():
    cfg = EfficientFormerConfig(widths=(40, 88, 200, 432), depths=(0, 1, 5, 3), num_vit=0, name="slim")
    assert cfg.total_blocks == 9


@pytest.mark.parametrize("kwargs, message", [
    (dict(widths=(48, 96, 224, 0), depths=(3, 2, 6, 4), num_vit=1), "positive multiple of 8"),
    (dict(widths=(48, 96, 224, 450), depths=(3, 2, 6, 4), num_vit=1), "positive multiple of 8"),
    (dict(widths=(48, 96, 224, -8), depths=(3, 2, 6, 4), num_vit=1), "positive multiple of 8"),
    (dict(widths=(48, 96, 224), depths=(3, 2, 6, 4), num_vit=1), "list of 4 integers"),
    (dict(widths=(48, 96, 224, 448), depths=(3, -1, 6, 4), num_vit=1), "must be >= 0"),
    (dict(widths=(48, 96, 224, 448), depths=(3, 2, 6, 4), num_vit=5), "between 0 and the last stage"),
    (dict(widths=(48, 96, 224, 448), depths=(3, 2, 6, 4), num_vit=-1), "between 0 and the last stage"),
    (dict(widths=(48, 96, 224, 448), depths=(3, 2, 6, 4), num_vit=1, pool_size=2), "must be odd"),
    (dict(widths=(48, 96, 224, 448), depths=(3, 2, 6, 4), num_vit=1, key_dim=0), "positive integer"),
])
def test_invalid_configs_raise_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message) as err:
        EfficientFormerConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_from_json_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid JSON"):
        EfficientFormerConfig.from_json("{widths: [")
    with pytest.raises(ConfigError, match="unknown architecture field"):
        EfficientFormerConfig.from_dict({**VARIANTS["l1"].to_dict(), "heads": 4})
    with pytest.raises(ConfigError, match="missing required"):
        EfficientFormerConfig.from_dict({"widths": [48, 96, 224, 448]})
    with pytest.raises(ConfigError, match="cannot read architecture file"):
        EfficientFormerConfig.load(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**VARIANTS["l1"].to_dict(), "num_vit": 9}))
    with pytest.raises(ConfigError, match="bad.json: num_vit=9"):
        get_config(str(bad))
    with pytest.raises(ConfigError, match="unknown EfficientFormer variant 'l5'"):
        get_config("l5")
