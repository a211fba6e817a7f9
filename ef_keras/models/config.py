"""What every family's architecture config shares: normalising, validation and the JSON round trip.

An architecture is data: a frozen dataclass per family (`EfficientFormerConfig`,
`EfficientFormerV2Config`) whose fields are the architecture. `ArchitectureConfig` gives both the
same behaviour: integer tuples checked where they enter, one-line `ConfigError`s that say what to
change, and `to_dict` / `from_dict` / `to_json` / `save` / `load` with the family's name in the
JSON (`"family": "v1"` / `"v2"`, the registry's spelling).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

from ef_keras.checks import check_int, check_number
from ef_keras.errors import EfKerasError
from ef_keras.output import write_text

#: Width granularity the search moves in is 16; any multiple of 8 is accepted.
WIDTH_MULTIPLE = 8
NUM_STAGES = 4
#: The family of an architecture dict without a "family" field: 0.1 and 0.2 wrote V1 architectures
#: (the search's among them) without one.
DEFAULT_FAMILY = "v1"
#: How 0.2 spelled a family in the JSON it wrote (V2 configs, and so V2 `.keras` files and LUTs).
FAMILY_SPELLINGS_OF_0_2 = {"efficientformer_v2": "v2"}


class ConfigError(EfKerasError):
    """An architecture config that cannot describe a buildable model."""


def dict_family(data: dict) -> str:
    """The family name of an architecture dict (its "family" field, as 0.3 spells it)."""
    family = data.get("family", DEFAULT_FAMILY)
    return FAMILY_SPELLINGS_OF_0_2.get(family, family)


@dataclasses.dataclass(frozen=True)
class ArchitectureConfig:
    """Base of the families' frozen config dataclasses: the fields every family has, and their behaviour.

    Attributes:
        widths: channels of stages 1-4.
        depths: blocks per stage.
        num_vit: attention blocks (the family says where they sit).

    A family adds its fields and sets `family` (its registry name), `REQUIRED` (fields a dict must have),
    `INT_FIELDS` (positive-integer hyper-parameters), `MIN_DEPTH` / `DEPTH_RULE` (the smallest
    stage depth and how to say it), and implements `num_vit_limit`; `_normalise` converts
    family-specific fields before validation.
    """

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    num_vit: int

    family: ClassVar[str]
    REQUIRED: ClassVar[tuple[str, ...]] = ("widths", "depths", "num_vit")
    INT_FIELDS: ClassVar[tuple[str, ...]] = ()
    MIN_DEPTH: ClassVar[int] = 0
    DEPTH_RULE: ClassVar[str] = "stage depths must be >= 0"

    def __post_init__(self):
        object.__setattr__(self, "widths", int_tuple("widths", self.widths))
        object.__setattr__(self, "depths", int_tuple("depths", self.depths))
        self._normalise()
        self.validate()

    def _normalise(self) -> None:
        """Converts family-specific fields in place (called before `validate`)."""

    def num_vit_limit(self) -> tuple[int, str]:
        """The largest `num_vit` this architecture allows, and how to name that limit."""
        raise NotImplementedError

    @classmethod
    def title(cls) -> str:
        """The family as users read it: the model class's name ("EfficientFormer", "EfficientFormerV2")."""
        return cls.__name__.removesuffix("Config")

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raises ConfigError (one line, saying what to change) if unbuildable."""
        for i, w in enumerate(self.widths):
            if w <= 0 or w % WIDTH_MULTIPLE:
                raise ConfigError(f"widths[{i}]={w}: every stage width must be a positive multiple of "
                                  f"{WIDTH_MULTIPLE} (got widths={list(self.widths)})")
        for i, d in enumerate(self.depths):
            if d < self.MIN_DEPTH:
                raise ConfigError(f"depths[{i}]={d}: {self.DEPTH_RULE} (got depths={list(self.depths)})")
        if not isinstance(self.num_vit, int) or isinstance(self.num_vit, bool):
            raise ConfigError(f"num_vit must be an integer, got {self.num_vit!r}")
        limit, what = self.num_vit_limit()
        if not 0 <= self.num_vit <= limit:
            raise ConfigError(f"num_vit={self.num_vit} must be between 0 and {what}")
        for field in self.INT_FIELDS:
            check_int(field, getattr(self, field), low=1, error=ConfigError)
        if not isinstance(self.name, str):
            raise ConfigError(f"name must be a string, got {self.name!r}")
        check_number("layer_scale_init", self.layer_scale_init, low=0, low_open=True, error=ConfigError)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON types (tuples become lists), with the family's name first."""
        return {"family": self.family, **json.loads(json.dumps(dataclasses.asdict(self)))}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise ConfigError(f"an architecture config must be a JSON object, got {type(data).__name__}")
        family = dict_family(data)
        if family != cls.family:
            raise ConfigError(f"this is a {family!r} architecture, not {cls.title()}; load it with the matching "
                              "config class (ef_keras.registry.architecture reads either)")
        data = {k: v for k, v in data.items() if k != "family"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown architecture field(s) {unknown}; known fields: {sorted(known)}")
        missing = sorted(set(cls.REQUIRED) - set(data))
        if missing:
            raise ConfigError(f"architecture config is missing required field(s) {missing}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"architecture config is not valid JSON: {e}") from e
        return cls.from_dict(data)

    def save(self, path: str) -> None:
        """Writes the JSON atomically (temp file + rename)."""
        write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str):
        """`from_dict` of an architecture JSON file, errors prefixed with the path."""
        data = read_json_file(path)
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e


def read_json_file(path: str) -> Any:
    """The parsed JSON of an architecture file; ConfigError (one line) if unreadable or not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read architecture file {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"architecture file {path} is not UTF-8 text (byte {e.start}); give a JSON file") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: architecture config is not valid JSON: {e}") from e


def int_tuple(field: str, value) -> tuple[int, ...]:
    """`value` as a tuple of NUM_STAGES integers (bools refused); ConfigError otherwise."""
    try:
        items = tuple(value)
    except TypeError as e:
        raise ConfigError(f"{field} must be a list of {NUM_STAGES} integers, got {value!r}") from e
    if len(items) != NUM_STAGES or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ConfigError(f"{field} must be a list of {NUM_STAGES} integers, got {list(items)!r}")
    return items
