"""Parameter and MAC counts against the published numbers (paper Table 1, official README)."""

import pytest
from helpers import TINY, TINY_INPUT

import ef_keras
from ef_keras.models.efficientformer.macs import gmacs

# Published: paper/official README (params "12.3 M", GMACs "1.3"), to the precision the
# official toolbox printed (facts file §1.1). timm's all-parameter counts come from the
# parity fixtures, which record what real timm reported.
PUBLISHED = {"l1": (12.25e6, 1.300), "l3": (31.33e6, 3.926), "l7": (82.11e6, 10.159)}


@pytest.mark.parametrize("variant", sorted(PUBLISHED))
def test_gmacs_match_the_official_toolbox(variant):
    assert round(gmacs(variant), 3) == PUBLISHED[variant][1]


@pytest.mark.parametrize("variant", sorted(PUBLISHED))
def test_params_match_paper_and_timm(variant, timm_record):
    info = ef_keras.model_info(variant)
    assert round(info["params_paper"] / 1e6, 2) == PUBLISHED[variant][0] / 1e6
    assert info["params_all"] == timm_record["variants"][variant]["params_all"]


def test_info_of_a_custom_model_counts_its_own_heads():
    with_dist = ef_keras.model_info(ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=10))
    without = ef_keras.model_info(ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=10,
                                                           distillation=False))
    assert with_dist["params_all"] - without["params_all"] == 64 * 10 + 10
    assert with_dist["gmacs"] > without["gmacs"]
