"""The one timing loop and statistic definition (`ef_keras.timing`).

Expected values are worked out by hand from the definition (linear interpolation between
closest ranks: position q/100 * (n - 1) in the sorted sample), not computed by the code.
"""

import numpy as np
import pytest

from ef_keras import timing


def test_percentiles_follow_the_linear_definition():
    # sorted 10, 20, 30, 40: p10 at position 0.3 -> 10 + 0.3 * 10; median at 1.5 -> 25; p90 at 2.7 -> 37
    s = timing.summarize([40.0, 10.0, 30.0, 20.0])
    assert s["p10_ms"] == pytest.approx(13.0)
    assert s["median_ms"] == pytest.approx(25.0)
    assert s["p90_ms"] == pytest.approx(37.0)
    assert (s["min_ms"], s["max_ms"], s["mean_ms"], s["runs"]) == (10.0, 40.0, 25.0, 4)
    assert s["std_ms"] == pytest.approx(np.sqrt(125.0))  # population: mean of squared deviations 225, 25, 25, 225


def test_p10_of_eleven_calls_is_the_second_smallest():
    # n = 11: position 0.1 * 10 = 1 exactly, no interpolation
    assert timing.summarize(list(range(1, 12)))["p10_ms"] == 2.0


def test_empty_timings_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        timing.summarize([])


def test_interleaved_loop_calls_every_runner_once_per_round_in_shuffled_order():
    calls = []
    runners = {name: (lambda n=name: calls.append(n)) for name in "abcd"}
    rounds = []
    times = timing.time_interleaved(runners, runs=20, warmup=2, progress=lambda done, total: rounds.append(done))
    assert calls[:8] == list("aabbccdd")  # warm-up: each runner twice, in order
    timed = calls[8:]
    assert len(timed) == 80 and all(sorted(timed[i:i + 4]) == list("abcd") for i in range(0, 80, 4))
    orders = {tuple(timed[i:i + 4]) for i in range(0, 80, 4)}
    assert len(orders) > 1, "the order of the runners never changed between rounds"
    assert rounds == list(range(1, 21))
    assert set(times) == set("abcd") and all(t.shape == (20,) and (t >= 0).all() for t in times.values())


def test_unshuffled_loop_keeps_the_mapping_order():
    calls = []
    timing.time_interleaved({n: (lambda n=n: calls.append(n)) for n in "xyz"}, runs=3, warmup=0, shuffle=False)
    assert calls == list("xyzxyzxyz")


def test_a_slow_runner_measures_slower():
    import time

    times = timing.time_interleaved({"fast": lambda: None, "slow": lambda: time.sleep(0.005)}, runs=5, warmup=0)
    assert timing.summarize(times["slow"])["min_ms"] >= 5.0 > timing.summarize(times["fast"])["max_ms"]
