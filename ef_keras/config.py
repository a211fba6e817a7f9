"""Architecture configs for EfficientFormer (V1): the named variants and any searched one.

An architecture is data: per-stage widths, per-stage depths and how many 3D MetaBlocks
(attention) close the last stage. The named variants, the slimming search, the
converters and the training CLI all speak this one dataclass, which round-trips through
JSON.

Variant table: Li et al., "EfficientFormer: Vision Transformers at MobileNet Speed",
NeurIPS 2022, Table 1 / official `EfficientFormer_width`, `EfficientFormer_depth`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from ef_keras.checks import check_int, check_number
from ef_keras.errors import EfKerasError
from ef_keras.output import write_text
from ef_keras.plan import Block, plan

#: Width granularity the search moves in is 16; any multiple of 8 is accepted.
WIDTH_MULTIPLE = 8
NUM_STAGES = 4


class ConfigError(EfKerasError):
    """An architecture config that cannot describe a buildable EfficientFormer."""


@dataclasses.dataclass(frozen=True)
class EfficientFormerConfig:
    """One EfficientFormer architecture.

    Args:
        widths: channels of stages 1-4 (stem widths are widths[0] // 2, then widths[0]).
        depths: blocks in stages 1-4, Flat excluded. A stage may have depth 0 (the
            search can remove every block of a stage; its downsampling stays).
        num_vit: how many 3D MetaBlocks (attention) close stage 4, 0..depths[3].
            The single 4D->3D Flat sits right before them (at the end of stage 4 when
            num_vit is 0).
        name: a label carried into model names and reports.
        mlp_ratio: hidden/in width of every MetaBlock MLP.
        key_dim, num_heads, attn_ratio: attention layout (q and k have key_dim
            channels per head, v has attn_ratio * key_dim).
        pool_size: the 4D token mixer's average-pool window.
        layer_scale_init: initial value of every layer-scale vector.

    Example:
        >>> cfg = EfficientFormerConfig(widths=(48, 96, 224, 448), depths=(3, 2, 6, 4), num_vit=1)
        >>> EfficientFormerConfig.from_json(cfg.to_json()) == cfg
        True
    """

    widths: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_vit: int
    name: str = "custom"
    mlp_ratio: int = 4
    key_dim: int = 32
    num_heads: int = 8
    attn_ratio: int = 4
    pool_size: int = 3
    layer_scale_init: float = 1e-5

    def __post_init__(self):
        object.__setattr__(self, "widths", _int_tuple("widths", self.widths))
        object.__setattr__(self, "depths", _int_tuple("depths", self.depths))
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raises ConfigError (one line, saying what to change) if unbuildable."""
        for i, w in enumerate(self.widths):
            if w <= 0 or w % WIDTH_MULTIPLE:
                raise ConfigError(
                    f"widths[{i}]={w}: every stage width must be a positive multiple of "
                    f"{WIDTH_MULTIPLE} (got widths={list(self.widths)})")
        for i, d in enumerate(self.depths):
            if d < 0:
                raise ConfigError(f"depths[{i}]={d}: stage depths must be >= 0 (got depths={list(self.depths)})")
        if not isinstance(self.num_vit, int) or isinstance(self.num_vit, bool):
            raise ConfigError(f"num_vit must be an integer, got {self.num_vit!r}")
        if not 0 <= self.num_vit <= self.depths[3]:
            raise ConfigError(
                f"num_vit={self.num_vit} must be between 0 and the last stage's depth "
                f"depths[3]={self.depths[3]}")
        for field in ("mlp_ratio", "key_dim", "num_heads", "attn_ratio", "pool_size"):
            check_int(field, getattr(self, field), low=1, error=ConfigError)
        if not isinstance(self.name, str):
            raise ConfigError(f"name must be a string, got {self.name!r}")
        if self.pool_size % 2 == 0:
            raise ConfigError(f"pool_size={self.pool_size} must be odd so the pool mixer keeps the grid")
        check_number("layer_scale_init", self.layer_scale_init, low=0, low_open=True, error=ConfigError)

    # ------------------------------------------------------------------ derived
    @property
    def stem_widths(self) -> tuple[int, int]:
        return (self.widths[0] // 2, self.widths[0])

    @property
    def num_4d_last(self) -> int:
        """4D MetaBlocks in stage 4 (before the Flat)."""
        return self.depths[3] - self.num_vit

    @property
    def total_blocks(self) -> int:
        return sum(self.depths)

    @property
    def stage_blocks(self) -> tuple[tuple[str, ...], ...]:
        """Per stage, its block types in order: 4D everywhere, the `num_vit` 3D blocks close stage 4."""
        return tuple(("4d",) * d for d in self.depths[:3]) + (("4d",) * self.num_4d_last + ("3d",) * self.num_vit,)

    def blocks(self, image_size=(224, 224), classes: int = 1000) -> list[Block]:
        """The block plan (`ef_keras.plan`): every unit of this architecture, in order."""
        return plan(self.widths, self.stage_blocks, image_size, classes)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["widths"], d["depths"] = list(self.widths), list(self.depths)
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EfficientFormerConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"an architecture config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown architecture field(s) {unknown}; known fields: {sorted(known)}")
        missing = sorted({"widths", "depths", "num_vit"} - set(data))
        if missing:
            raise ConfigError(f"architecture config is missing required field(s) {missing}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "EfficientFormerConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"architecture config is not valid JSON: {e}") from e
        return cls.from_dict(data)

    def save(self, path: str) -> None:
        """Writes the JSON atomically (temp file + rename)."""
        write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str) -> "EfficientFormerConfig":
        return load_architecture_file(cls, path)


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


def load_architecture_file(cls, path: str):
    """`cls.from_dict` of an architecture JSON file, errors prefixed with the path (any config family)."""
    data = read_json_file(path)
    try:
        return cls.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


def _int_tuple(field: str, value) -> tuple[int, ...]:
    try:
        items = tuple(value)
    except TypeError as e:
        raise ConfigError(f"{field} must be a list of {NUM_STAGES} integers, got {value!r}") from e
    if len(items) != NUM_STAGES or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ConfigError(f"{field} must be a list of {NUM_STAGES} integers, got {list(items)!r}")
    return items


#: The published family (paper Table 1). Reference top-1 / iPhone 12 latency in comments.
VARIANTS: dict[str, EfficientFormerConfig] = {
    "l1": EfficientFormerConfig(widths=(48, 96, 224, 448), depths=(3, 2, 6, 4), num_vit=1, name="l1"),  # 79.2 %, 1.6 ms
    "l3": EfficientFormerConfig(widths=(64, 128, 320, 512), depths=(4, 4, 12, 6), num_vit=4, name="l3"),  # 82.4 %, 3.0 ms
    "l7": EfficientFormerConfig(widths=(96, 192, 384, 768), depths=(6, 6, 18, 8), num_vit=8, name="l7"),  # 83.3 %, 7.0 ms
}


def get_config(name_or_path: "str | EfficientFormerConfig") -> EfficientFormerConfig:
    """Resolves a variant name ("l1", "L3", "efficientformer_l7"), a JSON path, or a config."""
    if isinstance(name_or_path, EfficientFormerConfig):
        return name_or_path
    if not isinstance(name_or_path, str):
        raise ConfigError(f"expected a variant name, a JSON path or an EfficientFormerConfig, got {name_or_path!r}")
    key = name_or_path.lower().removeprefix("efficientformer").strip("_-")
    if key in VARIANTS:
        return VARIANTS[key]
    if name_or_path.endswith(".json") or os.path.sep in name_or_path:
        return EfficientFormerConfig.load(name_or_path)
    if key.removeprefix("v2").strip("_-") in ("s0", "s1", "s2", "l"):
        raise ConfigError(f"{name_or_path!r} is an EfficientFormerV2 variant; build it with "
                          f"ef_keras.EfficientFormerV2({key.removeprefix('v2').strip('_-')!r}) (or EfficientFormerV2S0, ...)")
    raise ConfigError(f"unknown EfficientFormer variant {name_or_path!r}; choose one of "
                      f"{sorted(VARIANTS)} or pass an architecture .json file")
