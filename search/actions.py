"""The three slimming actions of the paper (§3.3, step 3), as pure functions of an `Arch`.

- "depth":  set the least important MetaPath still in use to identity (any stage; with
            `min_depth=1`, the default of slimming, never the last block of a stage);
- "mb3d":   remove the first MB3D. In the model family the 3D blocks are one run at the end
            of stage 4 (the searched number N); removing the first of them ends that run one
            block later, i.e. that position becomes an MB4D (replacing it by an identity is
            already the depth action);
- "width":  reduce the least important stage's width by 16 (stages already at 16 skipped).

Each returns (new Arch, description) or None when the action no longer applies. Ties are
broken by position (earliest first), so the search is deterministic. `importance` gives the
paper's score of what an action removes (the tie-break of last resort in slimming).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from search.arch import WIDTH_STEP, Arch
from search.scoring import stage_scores

ACTIONS = ("depth", "mb3d", "width")


def depth_action(arch: Arch, scores: np.ndarray, path_stage: list[int], min_depth: int = 0):
    by_stage = [[p for p, s in enumerate(path_stage) if s == stage] for stage in range(4)]
    active = [(float(scores[by_stage[s][k]]), s, k) for s in range(4) for k in arch.active(s)
              if len(arch.active(s)) > min_depth]
    if not active:
        return None
    score, s, k = min(active)
    choices = [list(c) for c in arch.choices]
    choices[s][k] = "id"
    return dataclasses.replace(arch, choices=tuple(map(tuple, choices))), \
        f"stage {s + 1} path {k} ({arch.choices[s][k]}, score {score:.3g}) -> identity"


def mb3d_action(arch: Arch, scores: np.ndarray, path_stage: list[int], min_depth: int = 0):
    stage4 = list(arch.choices[3])
    if "3d" not in stage4:
        return None
    k = stage4.index("3d")
    stage4[k] = "4d"
    by_stage = [p for p, s in enumerate(path_stage) if s == 3]
    return dataclasses.replace(arch, choices=arch.choices[:3] + (tuple(stage4),)), \
        f"stage 4 path {k} (score {float(scores[by_stage[k]]):.3g}): first MB3D -> MB4D"


def width_action(arch: Arch, scores: np.ndarray, path_stage: list[int], min_depth: int = 0):
    totals = stage_scores(scores, path_stage, arch)
    shrinkable = [(totals[s], s) for s in range(4) if arch.widths[s] > WIDTH_STEP]
    if not shrinkable:
        return None
    score, s = min(shrinkable)
    widths = list(arch.widths)
    widths[s] -= WIDTH_STEP
    return dataclasses.replace(arch, widths=tuple(widths)), \
        f"stage {s + 1} (score {score:.3g}) width {arch.widths[s]} -> {widths[s]}"


_FUNCTIONS = {"depth": depth_action, "mb3d": mb3d_action, "width": width_action}


def candidates(arch: Arch, scores: np.ndarray, path_stage: list[int],
               min_depth: int = 0) -> list[tuple[str, Arch, str]]:
    """Every applicable action as (action name, resulting Arch, description), in ACTIONS order.

    `min_depth`: stages keep at least this many blocks (1: no stage is emptied).
    """
    out = []
    for name in ACTIONS:
        result = _FUNCTIONS[name](arch, scores, path_stage, min_depth)
        if result is not None:
            out.append((name, *result))
    return out


def importance(name: str, before: Arch, after: Arch, scores: np.ndarray, path_stage: list[int]) -> float:
    """The paper's importance of what `name` took away from `before`: the removed MetaPath's
    score (depth), the MB3D's path score (mb3d) or the narrowed stage's score (width)."""
    by_stage = [[p for p, s in enumerate(path_stage) if s == stage] for stage in range(4)]
    if name == "width":
        s = next(i for i in range(4) if before.widths[i] != after.widths[i])
        return stage_scores(scores, path_stage, before)[s]
    s, k = next((s, k) for s in range(4) for k in range(len(before.choices[s]))
                if before.choices[s][k] != after.choices[s][k])
    return float(scores[by_stage[s][k]])
