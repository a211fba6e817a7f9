"""Whole reference models and single-action pairs: what a LUT is checked and corrected against.

A harness times these whole models in the same session as the LUT's units (they become the
LUT's `reference_models`); the correction is fitted on them and `--check-lut` re-times them.
For EfficientFormer (V1) the set covers the space the search moves in:

- the named variants the space measures (L1, L3, L7);
- the supernet, where slimming starts: the maximum widths and depths, every stage-4 block 3D;
- states slimming visits: seeded walks from the supernet, one slimming action per step;
- single-action pairs: every action slimming takes (`ACTIONS`: one block fewer in a stage, one
  stage 16 narrower, the first MB3D turned into an MB4D) applied to visited states;
- seeded random architectures of the search's grid.

EfficientFormerV2 has no search here: its set is S0/S1/S2/L and random architectures at the
widths and ratios its LUT measures.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from android_ios_bench.units import SUPERNET_MAX_DEPTHS, is_v2_space

#: The slimming actions a pair applies: a stage loses one block ("depth"), a stage loses 16
#: channels ("width"), the first 3D block of stage 4 becomes a 4D block ("mb3d").
ACTIONS = ("depth", "width", "mb3d")
#: Defaults of the V1 reference set (34 models on the default space).
REFERENCE_RANDOM = 8
WALK_STEPS = (3, 6)
PAIR_STATES = ("supernet", "walk0_3")
#: Random V2 architectures beside S0/S1/S2/L (20 models).
V2_REFERENCE_RANDOM = 16


@dataclasses.dataclass(frozen=True)
class ActionPair:
    """A state slimming visits and the state one action away (`base` - `derived` is the saving)."""

    base: str
    derived: str
    action: str
    stage: int | None  # 0-3 for depth and width, None for mb3d

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def supernet_config(space: dict):
    """Slimming's start: the space's maximum widths and depths, stage 4 all 3D blocks."""
    from ef_keras.models.efficientformer.config import EfficientFormerConfig

    return EfficientFormerConfig(widths=tuple(space["max_widths"]), depths=SUPERNET_MAX_DEPTHS,
                                 num_vit=SUPERNET_MAX_DEPTHS[3], name="supernet", **_hyper(space))


def _hyper(space: dict) -> dict:
    return {k: space[k] for k in ("mlp_ratio", "pool_size", "key_dim", "num_heads", "attn_ratio")}


def apply_action(config, action: str, stage: int | None, min_widths, step: int, name: str):
    """`config` after one slimming action, or None where the action cannot apply.

    depth: stage `stage` loses a block (in stage 4 a 4D block while it has one, else a 3D
    block); every stage keeps at least one. width: stage `stage` loses `step` channels, down to
    its minimum. mb3d: the first 3D block becomes a 4D block (the depth stays).
    """
    depths, widths, num_vit = list(config.depths), list(config.widths), config.num_vit
    if action == "depth":
        if depths[stage] <= 1:
            return None
        depths[stage] -= 1
        if stage == 3 and num_vit > depths[3]:
            num_vit -= 1  # stage 4 had only 3D blocks: one of them goes
    elif action == "width":
        if widths[stage] - step < min_widths[stage]:
            return None
        widths[stage] -= step
    elif action == "mb3d":
        if num_vit == 0:
            return None
        num_vit -= 1
    else:
        raise ValueError(f"unknown action {action!r}; one of {ACTIONS}")
    return dataclasses.replace(config, widths=tuple(widths), depths=tuple(depths), num_vit=num_vit, name=name)


def _actions(config) -> list[tuple[str, int | None]]:
    return [("depth", s) for s in range(4)] + [("width", s) for s in range(4)] + [("mb3d", None)]


def slimming_walk(space: dict, steps: int, seed: int, prefix: str) -> list:
    """States of one seeded walk from the supernet, one random applicable action per step."""
    rng = np.random.default_rng(seed)
    state, states = supernet_config(space), []
    for i in range(1, steps + 1):
        options = [a for a in _actions(state)
                   if apply_action(state, *a, space["min_widths"], space["width_step"], "x") is not None]
        action = options[int(rng.integers(len(options)))]
        state = apply_action(state, *action, space["min_widths"], space["width_step"], f"{prefix}_{i}")
        states.append(state)
    return states


def _arch(config) -> tuple:
    return tuple(config.widths), tuple(config.depths), config.num_vit


def action_pairs(space: dict, bases, known=()) -> tuple[list, list[ActionPair]]:
    """(new derived configs, pairs): every action slimming takes, applied to each base config.

    A derived architecture equal to one in `known` (or derived earlier) is not repeated: its
    pair names the existing config.
    """
    names = {_arch(c): c.name for c in known}
    derived, pairs = [], []
    for base in bases:
        for action, stage in _actions(base):
            suffix = "mb3d" if action == "mb3d" else f"{action[0]}{stage + 1}"
            after = apply_action(base, action, stage, space["min_widths"], space["width_step"],
                                 f"{base.name}-{suffix}")
            if after is None:
                continue
            if _arch(after) not in names:
                names[_arch(after)] = after.name
                derived.append(after)
            pairs.append(ActionPair(base.name, names[_arch(after)], action, stage))
    return derived, pairs


def random_configs(space: dict, n: int, seed: int, prefix: str = "random") -> list:
    """`n` seeded random architectures of the search's grid (widths, depths, 3D blocks)."""
    from ef_keras.models.efficientformer.config import EfficientFormerConfig

    rng = np.random.default_rng(seed)
    step = space["width_step"]
    out = []
    for i in range(n):
        widths = tuple(int(rng.integers(lo // step, hi // step + 1)) * step
                       for lo, hi in zip(space["min_widths"], space["max_widths"]))
        depths = tuple(int(rng.integers(1, d + 1)) for d in SUPERNET_MAX_DEPTHS)
        out.append(EfficientFormerConfig(widths=widths, depths=depths, num_vit=int(rng.integers(0, depths[3] + 1)),
                                         name=f"{prefix}{i}", **_hyper(space)))
    return out


def reference_set(space: dict, *, n_random: int | None = None, walk_steps=WALK_STEPS,
                  pair_states=PAIR_STATES, seed: int = 2022) -> tuple[list, list[ActionPair]]:
    """(configs, pairs) of a space's reference models, each config named; pairs name two of them.

    `n_random` random architectures (default REFERENCE_RANDOM, V2_REFERENCE_RANDOM for V2).
    """
    if is_v2_space(space):
        return _v2_reference_configs(space, V2_REFERENCE_RANDOM if n_random is None else n_random, seed + 1), []
    n_random = REFERENCE_RANDOM if n_random is None else n_random
    from ef_keras.models.efficientformer.config import VARIANTS

    configs = [VARIANTS[n] for n in space.get("named", [])] + [supernet_config(space)]
    for w, steps in enumerate(walk_steps):
        configs += slimming_walk(space, steps, seed + w, f"walk{w}")
    configs = list({_arch(c): c for c in reversed(configs)}.values())[::-1]  # first name of each architecture
    by_name = {c.name: c for c in configs}
    derived, pairs = action_pairs(space, [by_name[n] for n in pair_states if n in by_name], known=configs)
    seen = {_arch(c) for c in configs + derived}
    configs += derived + [c for c in random_configs(space, n_random, seed) if _arch(c) not in seen]
    return configs, pairs


def reference_configs(space: dict, **kwargs) -> list[tuple[str, Any]]:
    """(name, config) of a space's reference models (`reference_set` without the pairs)."""
    return [(c.name, c) for c in reference_set(space, **kwargs)[0]]


def _v2_reference_configs(space: dict, n_random: int, seed: int) -> list:
    """S0/S1/S2/L and random V2 architectures (measured widths, random depths, ratios and num_vit)."""
    from ef_keras.models.efficientformer_v2.config import V2_VARIANTS

    out = [cfg for cfg in V2_VARIANTS.values()
           if all(w in measured for w, measured in zip(cfg.widths, space["widths"]))]
    rng = np.random.default_rng(seed)
    for i in range(n_random):
        widths = tuple(int(rng.choice(stage)) for stage in space["widths"])
        depths = tuple(int(rng.integers(1, d + 1)) for d in (5, 5, 15, 10))
        ratios = tuple(tuple(int(rng.choice(space["mlp_ratios"])) for _ in range(d)) for d in depths)
        out.append(dataclasses.replace(V2_VARIANTS["s0"], widths=widths, depths=depths, mlp_ratios=ratios,
                                       num_vit=int(rng.integers(0, min(depths[2:]) + 1)), name=f"v2ref{i}"))
    return out
