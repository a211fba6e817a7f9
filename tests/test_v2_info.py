"""EfficientFormerV2 counts: parameters equal to timm's, GMACs equal to the published ones.

Expected values come from outside our code: parameter counts from the real timm models (recorded
by tests/fixtures/make_parity_fixtures_v2.py in parity_fixtures_v2.json) and GMACs from the
official README / facts file (0.396 / 0.652 / 1.247 / 2.553 at 224, published rounded as
0.40 / 0.65 / 1.25 / 2.56).
"""

import json
import os

import pytest

import ef_keras
from conftest import FIXTURES
from ef_keras.models.efficientformer_v2.macs import gmacs as gmacs_v2

PUBLISHED_GMACS = {"s0": 0.396, "s1": 0.652, "s2": 1.247, "l": 2.553}


@pytest.fixture(scope="module")
def timm_v2():
    with open(os.path.join(FIXTURES, "parity_fixtures_v2.json")) as f:
        return json.load(f)["variants"]


@pytest.mark.parametrize("variant", sorted(PUBLISHED_GMACS))
def test_gmacs_match_the_published_counts(variant):
    assert round(gmacs_v2(variant), 3) == PUBLISHED_GMACS[variant]


@pytest.mark.parametrize("variant", ["s0", pytest.param("s1", marks=pytest.mark.slow),
                                     pytest.param("s2", marks=pytest.mark.slow),
                                     pytest.param("l", marks=pytest.mark.slow)])
def test_params_match_timm(variant, timm_v2):
    info = ef_keras.model_info(variant)
    assert info["params_all"] == timm_v2[variant]["params_all"]
    assert info["params_no_bn"] == timm_v2[variant]["params_all"] - timm_v2[variant]["params_batchnorm"]
    assert round(info["gmacs"], 3) == PUBLISHED_GMACS[variant]


def test_gmacs_scale_with_the_input_and_the_heads():
    # 448 input: 4x the positions everywhere, and 16x for the attention matmuls (N^2); so more than 4x.
    assert gmacs_v2("s0", (448, 448)) > 4 * gmacs_v2("s0") - 4 * 2 * 176 * 1000 / 1e9
    assert gmacs_v2("s0", distillation=False) == pytest.approx(gmacs_v2("s0") - 176 * 1000 / 1e9)
