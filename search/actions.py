"""Slimming actions (paper §3.3, step 3) as pure functions of an `Arch`.

Kinds:

- "depth": one MetaPath still in use becomes identity (the block is removed);
- "mb3d":  the first MB3D of stage 4 becomes an MB4D (the 3D blocks are one run closing
           stage 4, so removing the first of them ends the run one block later);
- "width": one stage narrows by the space's width step.

Which candidates a step considers (`candidates`, `--actions`):

- "paper": the paper's three actions: remove the least important MetaPath, convert the first
  MB3D, narrow the least important stage (importance from `search.scoring`, normalised);
- "all": every legal removal of every stage, every stage's width step and the MB3D
  conversion (screened on few images, the best few confirmed on more: `search.slim`);
- "random": one legal action drawn at random (the null ablation; nothing is scored).

Every `Candidate` carries the normalised importance of what it removes (a block's keep-score,
a stage's mean score, the converted block's p_3D/p_4D), slimming's tie-break of last resort.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from search.arch import Arch
from search.scoring import stage_scores
from search.space import SearchSpace

KINDS = ("depth", "mb3d", "width")
#: The candidate sets a slimming step can consider (module docstring).
ACTION_MODES = ("paper", "all", "random")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One action applied to the current architecture."""

    kind: str
    stage: int  # 0-based
    arch: Arch
    desc: str
    importance: float

    @property
    def group(self) -> str:
        """What the action changes, at the granularity decisions are compared: kind and stage."""
        return f"{self.kind}@{self.stage + 1}"


def _replace_choice(arch: Arch, stage: int, position: int, choice: str) -> Arch:
    choices = [list(c) for c in arch.choices]
    choices[stage][position] = choice
    return dataclasses.replace(arch, choices=tuple(map(tuple, choices)))


def depth_candidates(arch: Arch, scores: np.ndarray, path_stage: list[int], min_depth: int) -> list[Candidate]:
    """Every active MetaPath whose stage keeps more than `min_depth` blocks, set to identity."""
    by_stage = [[p for p, s in enumerate(path_stage) if s == stage] for stage in range(4)]
    out = []
    for s in range(4):
        active = arch.active(s)
        if len(active) <= min_depth:
            continue
        for k in active:
            score = float(scores[by_stage[s][k]])
            out.append(Candidate("depth", s, _replace_choice(arch, s, k, "id"),
                                 f"stage {s + 1} block {k} ({arch.choices[s][k]}, score {score:.3g}) -> identity",
                                 score))
    return out


def mb3d_candidate(arch: Arch, attention: np.ndarray, path_stage: list[int]) -> Candidate | None:
    """The first MB3D of stage 4 turned into an MB4D (None without one)."""
    if "3d" not in arch.choices[3]:
        return None
    k = arch.choices[3].index("3d")
    score = float(attention[[p for p, s in enumerate(path_stage) if s == 3][k]])
    return Candidate("mb3d", 3, _replace_choice(arch, 3, k, "4d"),
                     f"stage 4 block {k} (p3D/p4D {score:.3g}): first MB3D -> MB4D", score)


def width_candidates(arch: Arch, space: SearchSpace, scores: np.ndarray, path_stage: list[int]) -> list[Candidate]:
    """Every stage above its narrowest width, narrowed by one step."""
    totals = stage_scores(scores, path_stage, arch)
    out = []
    for s in range(4):
        if arch.widths[s] - space.width_step < space.min_widths[s]:
            continue
        widths = list(arch.widths)
        widths[s] -= space.width_step
        out.append(Candidate("width", s, dataclasses.replace(arch, widths=tuple(widths)),
                             f"stage {s + 1} (score {totals[s]:.3g}) width {arch.widths[s]} -> {widths[s]}",
                             totals[s]))
    return out


def candidates(mode: str, arch: Arch, space: SearchSpace, scores: np.ndarray, attention: np.ndarray,
               path_stage: list[int], min_depth: int, rng: np.random.Generator | None = None,
               saves=None) -> list[Candidate]:
    """The candidates one slimming step considers in `mode` (module docstring), in a fixed order.

    `saves(arch) -> bool` (slimming: "the LUT predicts it faster than now") drops actions that
    save no latency *before* any is picked: in "paper" mode the least important removal and
    stage are taken among the actions that save time (otherwise a stage whose one-step narrowing
    the LUT predicts no faster would hide every other stage's width action); importance ties go
    to the earliest position, so the result is deterministic.
    """
    keep = (lambda cs: cs) if saves is None else (lambda cs: [c for c in cs if saves(c.arch)])
    depth = keep(depth_candidates(arch, scores, path_stage, min_depth))
    mb3d = keep([c for c in [mb3d_candidate(arch, attention, path_stage)] if c is not None])  # none or one
    width = keep(width_candidates(arch, space, scores, path_stage))
    if mode == "all":
        return depth + mb3d + width
    if mode == "paper":
        return [min(group, key=lambda c: c.importance) for group in (depth, mb3d, width) if group]
    if mode == "random":
        legal = depth + mb3d + width
        return [legal[rng.integers(len(legal))]] if legal else []
    raise ValueError(f"unknown action mode {mode!r}; expected one of {ACTION_MODES}")
