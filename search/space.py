"""The search space: the largest network, the width grid of every stage, and the default.

A space is the supernet's `EfficientFormerConfig` (largest widths and depths, block
hyper-parameters) plus the narrowest width each stage may be sliced to; widths move in
steps of `width_step` (16: the paper's LUT measures multiples of 16). The same grid is what
the latency table measures exactly (`android_ios_bench.units`), what the supernet trains
(`search.supernet` samples widths from it) and what slimming walks, and `check_lut_covers`
refuses a LUT that does not cover it.

The default space (`default_space`) is sized for the 2-core proxy job: L3's stage-1/2
widths with L1's stage-4 width grown to 512, depths 4/3/6/4 (17 MetaPaths), narrowest
widths half the largest. EfficientFormer-L1 (48/96/224/448, 3/2/6/4, one MB3D) is a point
of it, about 60 % of its largest network's latency on the host table, so reaching L1's
latency takes many actions of all three kinds.
"""

from __future__ import annotations

import dataclasses

from android_ios_bench.units import DEFAULT_MAX_WIDTHS, DEFAULT_MIN_WIDTHS, DEFAULT_WIDTH_STEP, SUPERNET_MAX_DEPTHS
from ef_keras.errors import EfKerasError
from ef_keras.models.efficientformer.config import EfficientFormerConfig

NUM_STAGES = 4


class SpaceError(EfKerasError):
    """A search space that cannot describe a supernet."""


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The largest network (`config`, `num_vit` ignored) and each stage's narrowest width.

    Args:
        config: widths and depths of the supernet and the block hyper-parameters.
        min_widths: the narrowest width of each stage (a multiple of `width_step`).
        width_step: the width grid's step.
    """

    config: EfficientFormerConfig
    min_widths: tuple[int, int, int, int]
    width_step: int = DEFAULT_WIDTH_STEP

    def __post_init__(self):
        object.__setattr__(self, "min_widths", tuple(int(w) for w in self.min_widths))
        if len(self.min_widths) != NUM_STAGES:
            raise SpaceError(f"min_widths needs {NUM_STAGES} entries, got {list(self.min_widths)}")
        for s, (lo, hi) in enumerate(zip(self.min_widths, self.config.widths)):
            if lo <= 0 or lo % self.width_step or hi % self.width_step or lo > hi:
                raise SpaceError(f"stage {s + 1}: widths {lo}..{hi} must be multiples of {self.width_step} "
                                 f"with 0 < min <= max")
        if any(d < 1 for d in self.config.depths):
            raise SpaceError(f"every stage needs at least one block, got depths {list(self.config.depths)}")

    @property
    def max_widths(self) -> tuple[int, ...]:
        return tuple(self.config.widths)

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(self.config.depths)

    def widths(self, stage: int) -> tuple[int, ...]:
        """Every width stage `stage` (0-based) can take, narrowest first."""
        return tuple(range(self.min_widths[stage], self.config.widths[stage] + 1, self.width_step))

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "min_widths": list(self.min_widths), "width_step": self.width_step}

    @classmethod
    def from_dict(cls, data: dict) -> "SearchSpace":
        try:
            return cls(EfficientFormerConfig.from_dict(data["config"]), tuple(data["min_widths"]),
                       int(data["width_step"]))
        except (KeyError, TypeError, ValueError) as e:
            raise SpaceError(f"malformed search space record: {e}") from e


#: The default supernet's depths; its widths and step are the grid the shipped latency table
#: measures, defined once with it (`android_ios_bench.units`).
DEFAULT_DEPTHS = SUPERNET_MAX_DEPTHS


def default_space(layer_scale_init: float = 0.1, max_widths=DEFAULT_MAX_WIDTHS, min_widths=DEFAULT_MIN_WIDTHS,
                  depths=DEFAULT_DEPTHS) -> SearchSpace:
    """The space of the quick proxy job (module docstring), or another grid of the same form.

    Layer scales start at 0.1, not the paper's 1e-5: in a short proxy run (a few hundred
    steps) scales from 1e-5 only grew to ~0.006 (measured in 0.2), every block stayed near
    the identity and removing any block changed no held-out prediction. A config that
    cannot exist (a depth of 0, a width off the grid) raises `SpaceError`.
    """
    try:
        config = EfficientFormerConfig(widths=tuple(max_widths), depths=tuple(depths), num_vit=0,
                                       layer_scale_init=layer_scale_init, name="supernet")
    except ValueError as e:
        raise SpaceError(f"not a supernet: {e}") from e
    return SearchSpace(config, min_widths=tuple(min_widths), width_step=DEFAULT_WIDTH_STEP)
