"""The model registry: every family with its classes and hooks, every named variant, one dispatcher.

Each family package (`ef_keras.models.efficientformer`, `..._v2`) registers itself here when it is
imported (`import ef_keras` imports both): its `Family` record carries the config and model
classes and the hooks the family-independent code calls (the block factory, GMACs, the checkpoint
key map), and each published variant registers its entry point. The converters, the CLIs, the
latency table and the test battery iterate `list_models()`, and every "which family is this"
question is `family_of`, so a new family or variant gets every tool by registering. (timm's
`_registry.py` is the model: this module imports no family, the families import it.)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

from ef_keras.errors import EfKerasError
from ef_keras.models.config import ConfigError, dict_family, read_json_file


class UnknownModelError(EfKerasError):
    """A model name that is not registered."""


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family and the hooks the family-independent code calls.

    Attributes:
        config_class: the family's `ArchitectureConfig` dataclass; its `family` is the family's name.
        model_class: the Keras model class (`EfficientFormer`, `EfficientFormerV2`).
        block_layer: `(block, config, drop_path=0.0, name=None) -> keras.layers.Layer` for one plan unit
            (the model, the supernet and the LUT's micro-models build units with it).
        gmacs: `(config, image_size, classes, distillation) -> float`, multiply-accumulates x 1e9.
        weight_map: `(model, include_head) -> {timm key: ef_keras.weights.Target}`, every weight.
        official_to_timm_key: renames one key of the official repository's layout to timm's.
        bias_index_keys: `model -> {timm key: index}` of the attention-bias index buffers.
        bias_index_in_state_dict: whether timm's state dict holds those buffers (written on export).
        checkpoint_marks: a regex that matches some key of every checkpoint of this family with
            attention, and no key of another family's checkpoints (names a wrong-family checkpoint).
        folded_layers: layer types whose parameters fold into the convolutions at inference.
        folded_params_key: the `model_info` key of the parameter count without them.
    """

    config_class: type
    model_class: type
    block_layer: Callable
    gmacs: Callable
    weight_map: Callable
    official_to_timm_key: Callable[[str], str]
    bias_index_keys: Callable
    bias_index_in_state_dict: bool
    checkpoint_marks: str
    folded_layers: tuple
    folded_params_key: str = "params_paper"

    @property
    def name(self) -> str:
        """The family's one spelling ("v1", "v2"): JSON "family" field, `list_models(family=)`, LUTs."""
        return self.config_class.family

    @property
    def title(self) -> str:
        """How messages name the family: its model class ("EfficientFormer", "EfficientFormerV2")."""
        return self.model_class.__name__

    @property
    def entry_points(self) -> list[str]:
        """`ef_keras.<builder>` of each registered variant of this family, for messages."""
        return [f"ef_keras.{m.builder.__name__}" for m in _MODELS.values() if m.family == self.name]


@dataclasses.dataclass(frozen=True)
class RegisteredModel:
    """One named variant.

    Attributes:
        name: the short name users type ("l1", "s0").
        family: its family's name ("v1", "v2"; `get_family` gives the record).
        builder: the keras.applications-style entry point (`EfficientFormerL1`, ...).
        config: the variant's architecture config.
    """

    name: str
    family: str
    builder: Callable
    config: object


_FAMILIES: dict[str, Family] = {}
_MODELS: dict[str, RegisteredModel] = {}


def register_family(family: Family) -> Family:
    """Adds a family (called by the family package when it is imported); returns it."""
    if _FAMILIES.get(family.name, family) != family:
        raise ValueError(f"model family {family.name!r} is registered twice")
    _FAMILIES[family.name] = family
    return family


def register_model(name: str, family: Family, builder: Callable, config) -> Callable:
    """Adds a variant (called by the family package when it is imported); returns `builder`."""
    if name in _MODELS and _MODELS[name].builder is not builder:
        raise ValueError(f"model name {name!r} is registered twice")
    _MODELS[name] = RegisteredModel(name, family.name, builder, config)
    return builder


def families() -> list[Family]:
    """The registered families, in registration order."""
    return list(_FAMILIES.values())


def get_family(name: str) -> Family:
    """The family called `name` ("v1", "v2"); ConfigError naming the known ones otherwise."""
    try:
        return _FAMILIES[name]
    except (KeyError, TypeError) as e:
        raise ConfigError(f"unknown model family {name!r}; known: {', '.join(_FAMILIES)}") from e


def family_of(thing) -> Family:
    """The family of a model, a config, a config dict, a registered variant name or a family name.

    The one answer to "which family is this": every dispatch by family goes through it.
    """
    if isinstance(thing, Family):
        return thing
    for family in _FAMILIES.values():
        if isinstance(thing, (family.config_class, family.model_class)):
            return family
    if isinstance(thing, dict):
        return get_family(dict_family(thing))
    if isinstance(thing, str):
        return get_family(thing if thing in _FAMILIES else registered(thing).family)
    raise ConfigError(f"cannot tell the model family of {type(thing).__name__} {thing!r}: expected an "
                      f"EfficientFormer model or config of one of the families {', '.join(_FAMILIES)}")


def list_models(family: str | None = None) -> list[str]:
    """Registered variant names, in registration order (optionally of one family: "v1", "v2")."""
    return [name for name, entry in _MODELS.items() if family in (None, entry.family)]


def _lookup(name: str) -> RegisteredModel | None:
    """The entry of "l1", "L1", "efficientformer_l1", "efficientformerv2_s0", "efficientformer_v2_l"; else None."""
    key = name.lower().removeprefix("efficientformer").strip("_-")
    for family in _FAMILIES.values():  # a family prefix ("v2_s0") picks that family's variant
        entry = _MODELS.get(key.removeprefix(family.name).strip("_-"))
        if key.startswith(family.name) and entry and entry.family == family.name:
            return entry
    return _MODELS.get(key)


def registered(name: str) -> RegisteredModel:
    """The registry entry of `name` ("l1", "L1", "efficientformer_l1", "efficientformerv2_s0")."""
    entry = _lookup(name) if isinstance(name, str) else None
    if entry is None:
        raise UnknownModelError(f"unknown EfficientFormer model {name!r}; choose one of {', '.join(_MODELS)} "
                                "or pass an architecture .json file")
    return entry


def architecture(spec, family: str | None = None):
    """An architecture config from a config, a registered name, a dict or a JSON path.

    Dicts and JSON files name their family in a "family" field (none: V1, as the search and
    0.1/0.2 wrote them). With `family` ("v1", "v2"), only that family's architectures are
    accepted, and the errors say what to build instead.
    """
    wanted = None if family is None else get_family(family)
    if any(isinstance(spec, f.config_class) for f in _FAMILIES.values()):
        if wanted and not isinstance(spec, wanted.config_class):
            raise ConfigError(f"expected an {wanted.title} architecture, got an {family_of(spec).title} config")
        return spec
    if isinstance(spec, dict):
        return (wanted or get_family(dict_family(spec))).config_class.from_dict(spec)
    if isinstance(spec, str):
        entry = _lookup(spec)
        if entry and (wanted is None or entry.family == wanted.name):
            return entry.config
        if spec.endswith(".json") or os.path.sep in spec:
            data = read_json_file(spec)
            try:
                return architecture(data, family)
            except ConfigError as e:
                raise ConfigError(f"{spec}: {e}") from e
        if wanted and entry:
            title = get_family(entry.family).title
            raise ConfigError(f"{spec!r} is an {title} variant; build it with ef_keras.{title}({entry.name!r}) "
                              f"(or {entry.builder.__name__})")
        if wanted:
            raise ConfigError(f"unknown {wanted.title} variant {spec!r}; choose one of {sorted(list_models(family))} "
                              "or pass an architecture .json file")
        registered(spec)  # raises UnknownModelError
    if wanted:
        raise ConfigError(f"expected a variant name, a JSON path or an {wanted.config_class.__name__}, got {spec!r}")
    raise ConfigError(f"expected an architecture: a config, a model name ({', '.join(list_models())}), a dict or a "
                      f"JSON path; got {spec!r}")


def build_model(spec, **kwargs):
    """The Keras model of an architecture of any family; `spec` as `architecture`, `kwargs` the constructor's."""
    config = architecture(spec)
    return family_of(config).model_class(config, **kwargs)


def create_model(name: str, **kwargs):
    """Builds a registered variant with keras.applications arguments (`weights`, `include_top`, ...)."""
    return registered(name).builder(**kwargs)
