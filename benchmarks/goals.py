"""The benchmarks' goals, kept in one place (`benchmarks/goals.json`), and the verdicts drawn from them.

    from benchmarks import goals
    goals.verdict("build_time_ratio", 0.95)   # "**met** (0.95 ≤ 1.1)"

A goal is a bound on one measured value (`at_most` or `at_least`), with what it bounds and
where it was set. Rendered tables take their verdicts from here, so a goal cannot be typed
into the README with another value. A name defined twice in the file is a one-line
`GoalError`, as is a name that is not defined.
"""

from __future__ import annotations

import dataclasses
import functools
import os

from ef_keras.checks import read_json
from ef_keras.errors import EfKerasError

GOALS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "goals.json")


class GoalError(EfKerasError):
    """A goal defined twice, not defined, or defined without exactly one bound."""


@dataclasses.dataclass(frozen=True)
class Goal:
    name: str
    what: str
    source: str
    at_most: float | None = None
    at_least: float | None = None

    @property
    def bound(self) -> str:
        """The goal as text, e.g. "≤ 1.1"."""
        return f"≤ {self.at_most:g}" if self.at_most is not None else f"≥ {self.at_least:g}"

    def met(self, value: float) -> bool:
        return value <= self.at_most if self.at_most is not None else value >= self.at_least

    def verdict(self, value: float, shown: str | None = None) -> str:
        """"**met** (0.95 ≤ 1.1)" or "**not met** (3.9, goal ≤ 2.5)"; `shown` is how the value is printed."""
        shown = f"{value:g}" if shown is None else shown
        return f"**met** ({shown} {self.bound})" if self.met(value) else f"**not met** ({shown}, goal {self.bound})"


def _no_duplicates(path: str):
    def hook(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise GoalError(f"goal {key!r} is defined twice in {path}; keep one definition")
            seen.add(key)
        return dict(pairs)
    return hook


def load(path: str = GOALS_FILE) -> dict[str, Goal]:
    """Every goal of the goals file, by name."""
    table = read_json(path, "goals file", GoalError, object_pairs_hook=_no_duplicates(path))
    result = {}
    for name, spec in table.items():
        bounds = [k for k in ("at_most", "at_least") if k in spec]
        if len(bounds) != 1:
            raise GoalError(f"goal {name!r} in {path} needs exactly one of at_most, at_least (has {bounds or 'none'})")
        result[name] = Goal(name=name, what=spec.get("what", ""), source=spec.get("source", ""),
                            **{bounds[0]: float(spec[bounds[0]])})
    return result


@functools.lru_cache(maxsize=None)
def _cached(path: str) -> dict[str, Goal]:
    return load(path)


def goal(name: str, path: str = GOALS_FILE) -> Goal:
    """The goal called `name`; GoalError if the goals file does not define it."""
    goals = _cached(path)
    if name not in goals:
        raise GoalError(f"no goal {name!r} in {path}; define it there (defined: {', '.join(sorted(goals))})")
    return goals[name]


def verdict(name: str, value: float, shown: str | None = None) -> str:
    """The verdict of goal `name` for `value` (see `Goal.verdict`)."""
    return goal(name).verdict(value, shown)
