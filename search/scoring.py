"""Importance scores of MetaPaths and stages, read from the supernet's architecture parameters.

Paper §3.3, step 3: s_i = α_i^4D / α_i^I in stages 1-2 and (α_i^3D + α_i^4D) / α_i^I in
stages 3-4; a stage's score is the sum over its MetaPaths. The paper's α are the
"importance" of each candidate; raw logits can be negative, where a ratio means nothing, so
we take the candidates' probabilities softmax(α) (for which p_4D/p_I = exp(α_4D − α_I)):
the same ranking whenever the paper's ratio is defined, and always positive.

A stage's score sums the MetaPaths the current sub-network still uses (identity positions
contribute nothing any more), so removing blocks from a stage makes it a likelier target
for width reduction, and a stage with no blocks left scores 0.
"""

from __future__ import annotations

import numpy as np

from search.arch import CANDIDATES, STAGES_WITH_3D, Arch

_I4, _I3, _II = (CANDIDATES.index(c) for c in ("4d", "3d", "id"))


def path_scores(probabilities: np.ndarray, path_stage: list[int]) -> np.ndarray:
    """(num_paths,) importance s_i from (num_paths, 3) candidate probabilities (4D | 3D | I)."""
    p = np.asarray(probabilities, "float64")
    if p.ndim != 2 or p.shape != (len(path_stage), len(CANDIDATES)):
        raise ValueError(f"expected probabilities of shape ({len(path_stage)}, 3), got {p.shape}")
    keep = p[:, _I4] + np.where(np.isin(path_stage, STAGES_WITH_3D), p[:, _I3], 0.0)
    return keep / np.maximum(p[:, _II], 1e-12)


def stage_scores(scores: np.ndarray, path_stage: list[int], arch: Arch) -> list[float]:
    """Sum of the scores of the MetaPaths each stage of `arch` still uses."""
    by_stage = [[p for p, s in enumerate(path_stage) if s == stage] for stage in range(4)]
    return [float(sum(scores[by_stage[s][k]] for k in arch.active(s))) for s in range(4)]


def initial_num_vit(probabilities: np.ndarray, path_stage: list[int]) -> int:
    """How many 3D MetaBlocks α alone would close stage 4 with (reported in importance.json).

    The longest run of stage-4 MetaPaths, counted from the end, whose supernet prefers the
    3D candidate over the 4D one (p_3D > p_4D): every kept 3D block is one the supernet voted
    for, and they form the suffix the model family requires.
    """
    p = np.asarray(probabilities)
    stage4 = [i for i, s in enumerate(path_stage) if s == 3]
    n = 0
    for i in reversed(stage4):
        if p[i, _I3] <= p[i, _I4]:
            break
        n += 1
    return n
