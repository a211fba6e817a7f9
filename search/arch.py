"""The discrete architecture that slimming walks through: one choice per MetaPath + stage widths.

A supernet position (stage s, path k) is a MetaPath whose candidates are
{4D MetaBlock, identity} in stages 1-2 and {4D, 3D, identity} in stages 3-4 (paper §3.3).
`Arch` records, for each position, which candidate the current sub-network keeps, and the
width every stage is sliced to. Positions keep their supernet index, so every block of a
sub-network knows which supernet weights it inherits.

Deployable-family constraint: `EfficientFormerConfig` (and all the paper's final models)
place 3D MetaBlocks only as one run at the end of stage 4, after the single Flat. A stage-3
MetaPath therefore keeps its 3D candidate during supernet training (it shapes α and so the
importance scores, as in the paper) but a sub-network takes only its 4D or identity
candidate there; in stage 4 the active 3D choices must be a suffix of the active positions.
`Arch.validate` enforces both rules.
"""

from __future__ import annotations

import dataclasses

from ef_keras.models.efficientformer.config import EfficientFormerConfig
from ef_keras.errors import EfKerasError
from ef_keras.models.plan import Layout
from search.space import SearchSpace

#: Candidate names in the order of the supernet's α columns.
CANDIDATES = ("4d", "3d", "id")
#: Stages (0-based) whose MetaPaths have a 3D candidate in the supernet.
STAGES_WITH_3D = (2, 3)


class ArchError(EfKerasError):
    """A sub-network description that the supernet or the model family cannot express."""


@dataclasses.dataclass(frozen=True)
class Arch:
    """A sub-network of the supernet.

    Args:
        widths: channels of each of the four stages (on the search space's width grid).
        choices: per stage, one of "4d" / "3d" / "id" per supernet position.
    """

    widths: tuple[int, int, int, int]
    choices: tuple[tuple[str, ...], ...]

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "choices", tuple(tuple(c) for c in self.choices))

    # ----------------------------------------------------------------- derived
    @property
    def layout(self) -> Layout:
        """The blocks this sub-network runs, identities dropped: the plan's and the predictor's layout type."""
        return Layout(self.widths, tuple(tuple(c for c in stage if c != "id") for stage in self.choices))

    @property
    def depths(self) -> tuple[int, ...]:
        return self.layout.depths

    @property
    def num_vit(self) -> int:
        return sum(c == "3d" for c in self.choices[3])

    def active(self, stage: int) -> list[int]:
        """Supernet positions of the blocks this sub-network keeps in `stage`, in order."""
        return [k for k, c in enumerate(self.choices[stage]) if c != "id"]

    def validate(self, space: SearchSpace) -> None:
        """Raises ArchError unless this is a sub-network of `space` that the family can build."""
        if len(self.widths) != 4 or len(self.choices) != 4:
            raise ArchError("an architecture needs 4 widths and 4 stages of choices")
        for s, w in enumerate(self.widths):
            if w not in space.widths(s):
                raise ArchError(f"stage {s + 1} width {w} is not on the search space's grid "
                                f"{space.min_widths[s]}..{space.max_widths[s]} in steps of {space.width_step}")
        for s, (stage, depth) in enumerate(zip(self.choices, space.depths)):
            if len(stage) != depth:
                raise ArchError(f"stage {s + 1} has {len(stage)} MetaPath choices, the supernet has {depth}")
            allowed = ("4d", "3d", "id") if s == 3 else ("4d", "id")
            bad = [c for c in stage if c not in allowed]
            if bad:
                raise ArchError(f"stage {s + 1} choices {bad} not in {allowed} (3D blocks only close stage 4)")
        kinds = [self.choices[3][k] for k in self.active(3)]
        if "3d" in kinds and "4d" in kinds[kinds.index("3d"):]:
            raise ArchError(f"stage 4 choices {list(self.choices[3])}: 3D blocks must follow every 4D block")

    def to_config(self, space: SearchSpace, name: str = "searched") -> EfficientFormerConfig:
        """The `EfficientFormerConfig` of this sub-network (buildable by ef_keras.EfficientFormer)."""
        return dataclasses.replace(space.config, widths=self.widths, depths=self.depths, num_vit=self.num_vit,
                                   name=name)

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        return {"widths": list(self.widths), "choices": [list(c) for c in self.choices]}

    @classmethod
    def from_dict(cls, data: dict) -> "Arch":
        try:
            return cls(widths=data["widths"], choices=data["choices"])
        except (KeyError, TypeError) as e:
            raise ArchError(f"malformed architecture record {data!r}: {e}") from e

    def describe(self) -> str:
        """Compact one-line form, e.g. 'w=64,128,256,512 d=3,3,6,4 vit=2'."""
        return (f"w={','.join(map(str, self.widths))} d={','.join(map(str, self.depths))} "
                f"vit={self.num_vit}")


def full_arch(space: SearchSpace, num_vit: int) -> Arch:
    """The whole supernet as a sub-network: every position 4D, the last `num_vit` of stage 4 3D."""
    depths = space.depths
    choices = [("4d",) * d for d in depths[:3]]
    choices.append(("4d",) * (depths[3] - num_vit) + ("3d",) * num_vit)
    return Arch(space.max_widths, tuple(choices))


def smallest_arch(space: SearchSpace, min_depth: int = 0) -> Arch:
    """The cheapest point of the space: every stage at its narrowest width and every MetaPath identity,
    except the first `min_depth` 4D blocks of each stage (0: only stem, downsamplings and head are left)."""
    return Arch(space.min_widths, tuple(("4d",) * min(min_depth, d) + ("id",) * max(d - min_depth, 0)
                                        for d in space.depths))
