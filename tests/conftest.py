"""Shared test set-up: quiet TensorFlow logs and a fixed seed per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)



FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(scope="session")
def timm_record():
    """What the fixture generator recorded of the real timm runs (versions, parameter counts)."""
    import json

    with open(os.path.join(FIXTURES, "parity_fixtures.json")) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def parity_fixture():
    """variant -> ParityFixture made by really running timm (see tests/fixtures/README.md)."""
    from fixtures.random_weights import load_parity_fixture

    cache = {}

    def get(variant):
        if variant not in cache:
            cache[variant] = load_parity_fixture(os.path.join(FIXTURES, f"parity_{variant}.npz"))
        return cache[variant]

    return get
