"""The model registry: every named variant, its family and its entry point, in one table.

`ef_keras.EfficientFormerL1` and its siblings register themselves here when their module is
imported, so the converters, the CLIs and the test battery (`tests/test_registry.py`)
iterate `list_models()` instead of keeping their own list of names: a new variant gets
every check and every tool by being registered. (timm's `_registry.py` is the model.)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

from ef_keras.errors import EfKerasError


class UnknownModelError(EfKerasError):
    """A model name that is not registered."""


@dataclasses.dataclass(frozen=True)
class RegisteredModel:
    """One named variant.

    Attributes:
        name: the short name users type ("l1", "s0").
        family: "v1" (EfficientFormer) or "v2" (EfficientFormerV2).
        builder: the keras.applications-style entry point (`EfficientFormerL1`, ...).
        config: the variant's architecture config.
    """

    name: str
    family: str
    builder: Callable
    config: object


_MODELS: dict[str, RegisteredModel] = {}


def register_model(name: str, family: str, builder: Callable, config) -> Callable:
    """Adds a variant (called at import by the model modules); returns `builder`."""
    if name in _MODELS and _MODELS[name].builder is not builder:
        raise ValueError(f"model name {name!r} is registered twice")
    _MODELS[name] = RegisteredModel(name, family, builder, config)
    return builder


def _load_families():
    """Imports the model modules, which register their variants."""
    import ef_keras.model  # noqa: F401
    import ef_keras.model_v2  # noqa: F401


def list_models(family: str | None = None) -> list[str]:
    """Registered variant names, in registration order (optionally of one family)."""
    _load_families()
    return [name for name, entry in _MODELS.items() if family in (None, entry.family)]


def registered(name: str) -> RegisteredModel:
    """The registry entry of `name` ("l1", "L1", "efficientformer_l1", "efficientformerv2_s0")."""
    _load_families()
    key = name.lower().removeprefix("efficientformerv2").removeprefix("efficientformer").strip("_-") \
        if isinstance(name, str) else name
    if key not in _MODELS:
        raise UnknownModelError(f"unknown EfficientFormer model {name!r}; choose one of {', '.join(_MODELS)} "
                                "or pass an architecture .json file")
    return _MODELS[key]


def architecture(spec):
    """An architecture config of either family from a config, a registered name, a dict or a JSON path.

    Dicts and JSON files of EfficientFormerV2 carry `"family": "efficientformer_v2"`; any
    other is read as an EfficientFormer (V1) architecture (the search writes those).
    """
    from ef_keras.config import ConfigError, EfficientFormerConfig, read_json_file
    from ef_keras.config_v2 import EfficientFormerV2Config

    if isinstance(spec, (EfficientFormerConfig, EfficientFormerV2Config)):
        return spec
    if isinstance(spec, str):
        if not (spec.endswith(".json") or os.path.sep in spec):
            return registered(spec).config
        data = read_json_file(spec)
        try:
            return architecture(data)
        except ConfigError as e:
            raise ConfigError(f"{spec}: {e}") from e
    if isinstance(spec, dict):
        family = EfficientFormerV2Config if spec.get("family") == "efficientformer_v2" else EfficientFormerConfig
        return family.from_dict(spec)
    raise ConfigError(f"expected an architecture: a config, a model name ({', '.join(list_models())}), a dict or "
                      f"a JSON path; got {spec!r}")


def build_model(spec, **kwargs):
    """The Keras model (`EfficientFormer` or `EfficientFormerV2`) of an architecture of either family.

    `spec` is anything `architecture` accepts; `kwargs` are the constructor's arguments.
    """
    from ef_keras.config_v2 import EfficientFormerV2Config
    from ef_keras.model import EfficientFormer
    from ef_keras.model_v2 import EfficientFormerV2

    config = architecture(spec)
    return (EfficientFormerV2 if isinstance(config, EfficientFormerV2Config) else EfficientFormer)(config, **kwargs)


def create_model(name: str, **kwargs):
    """Builds a registered variant with keras.applications arguments (`weights`, `include_top`, ...)."""
    return registered(name).builder(**kwargs)
