"""Importance scores of MetaPaths and stages, read from the supernet's architecture parameters.

The paper (§3.3, step 3) scores a MetaPath by s_i = α_i^4D / α_i^I in stages 1-2 and
(α_i^3D + α_i^4D) / α_i^I in stages 3-4, and a stage by Σ s_i. Read literally, these scales
differ by construction: with untrained (uniform) α a stage-1/2 path scores 1 and a stage-3/4
path 2, and a stage's sum grows with its number of blocks, so the literal scores rank
stages by their layout, whatever the supernet learned. We depart from the literal formula
in three documented ways:

1. α are logits (they can be negative, where a ratio means nothing), so we take the
   candidates' probabilities p = softmax(α): p_4D/p_I = exp(α_4D − α_I), the same ranking
   wherever the paper's ratio is defined;
2. every score is divided by its value under uniform α: a path by its number of non-identity
   candidates (1 or 2), a stage by its number of active paths (the mean, not the sum), so an
   untrained supernet scores every path and stage exactly 1, and a score above 1 means the
   supernet learned to prefer keeping it;
3. the MB3D action (attention → conv in the block it converts) is scored by p_3D / p_4D of
   that block (1 under uniform α), not by the block's keep-score, which measures something else.

`--importance uniform` (`uniform_probabilities`) is the null ablation: α ignored.
"""

from __future__ import annotations

import numpy as np

from search.arch import CANDIDATES, STAGES_WITH_3D, Arch

_I4, _I3, _II = (CANDIDATES.index(c) for c in ("4d", "3d", "id"))
#: How slimming reads α: the trained supernet's, or uniform (the null ablation).
IMPORTANCE_MODES = ("alpha", "uniform")


def uniform_probabilities(path_stage: list[int]) -> np.ndarray:
    """The probabilities of an untrained supernet: uniform over each path's allowed candidates."""
    p = np.ones((len(path_stage), len(CANDIDATES)))
    p[~np.isin(path_stage, STAGES_WITH_3D), _I3] = 0.0
    return p / p.sum(axis=1, keepdims=True)


def _check(probabilities, path_stage) -> np.ndarray:
    p = np.asarray(probabilities, "float64")
    if p.ndim != 2 or p.shape != (len(path_stage), len(CANDIDATES)):
        raise ValueError(f"expected probabilities of shape ({len(path_stage)}, 3), got {p.shape}")
    return p


def path_scores(probabilities: np.ndarray, path_stage: list[int]) -> np.ndarray:
    """(paths,) keep-scores (p_4D [+ p_3D]) / p_I, each divided by its uniform-α value."""
    p = _check(probabilities, path_stage)
    has_3d = np.isin(path_stage, STAGES_WITH_3D)
    keep = p[:, _I4] + np.where(has_3d, p[:, _I3], 0.0)
    return keep / np.maximum(p[:, _II], 1e-12) / np.where(has_3d, 2.0, 1.0)


def attention_scores(probabilities: np.ndarray, path_stage: list[int]) -> np.ndarray:
    """(paths,) p_3D / p_4D (1 under uniform α; 0 where a path has no 3D candidate)."""
    p = _check(probabilities, path_stage)
    return np.where(np.isin(path_stage, STAGES_WITH_3D), p[:, _I3] / np.maximum(p[:, _I4], 1e-12), 0.0)


def stage_scores(scores: np.ndarray, path_stage: list[int], arch: Arch) -> list[float]:
    """Mean normalised score of the MetaPaths each stage of `arch` still uses (0 for an empty stage)."""
    by_stage = [[p for p, s in enumerate(path_stage) if s == stage] for stage in range(4)]
    return [float(np.mean([scores[by_stage[s][k]] for k in arch.active(s)])) if arch.active(s) else 0.0
            for s in range(4)]


def importance_report(probabilities: np.ndarray, path_stage: list[int]) -> dict:
    """α's probabilities and the normalised scores, per MetaPath and per stage (importance.json)."""
    scores = path_scores(probabilities, path_stage)
    attention = attention_scores(probabilities, path_stage)
    by_stage = [[p for p, s in enumerate(path_stage) if s == stage] for stage in range(4)]
    return {
        "candidates": list(CANDIDATES),
        "paths": [{"stage": s + 1, "position": k, "probabilities": [float(v) for v in probabilities[p]],
                   "score": float(scores[p]), "attention_score": float(attention[p])}
                  for s in range(4) for k, p in enumerate(by_stage[s])],
        "stage_scores": [float(np.mean([scores[p] for p in by_stage[s]])) for s in range(4)],
        "score_definition": "path: (p4D [+ p3D]) / pI divided by its uniform-alpha value (1 or 2); stage: mean "
                            "over its paths; attention: p3D / p4D; p = softmax(alpha); 1 = no preference learned",
    }
