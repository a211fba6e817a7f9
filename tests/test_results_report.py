"""Results that cannot drift: the result header, the goals, and the README regions rendered from files.

The first test is the one CI relies on: README.md's generated regions must equal what
`benchmarks.report` renders from the committed files in benchmarks/results/. The others
check the writer (`ef_keras.provenance`), the goals file and the report against real files,
a real git repository and the real registry. No benchmark is run.
"""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import RESULTS_DIR, ROOT, goals, registry, report
from ef_keras import provenance, timing


def _readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_readme_regions_match_the_committed_result_files():
    text = _readme()
    names = [name for name, _, _ in report.regions(text)]
    assert set(names) == set(registry.REGIONS), "every registered region appears once in README.md"
    assert report.differing(text) == [], "run `python -m benchmarks.report` and commit README.md"


def test_every_committed_result_file_of_a_region_has_the_header():
    for region in registry.REGIONS.values():
        if region.result is not None:
            header, _ = provenance.read_result(os.path.join(RESULTS_DIR, region.result))
            assert header["statistics"] == timing.DEFINITIONS


def test_a_changed_number_in_a_region_is_caught():
    text = _readme()
    name, start, end = next(r for r in report.regions(text) if r[0] == "build_time")
    body = text[start:end]
    digit = next(i for i, c in enumerate(body) if c.isdigit())
    changed = body[:digit] + str((int(body[digit]) + 1) % 10) + body[digit + 1:]
    assert report.differing(text[:start] + changed + text[end:]) == [name]


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def test_header_records_this_run(tmp_path):
    run = provenance.start(packages=("numpy",), argv=["benchmarks/x.py", "--runs", "3"])
    path = tmp_path / "x.json"
    run.write(str(path), {"value": 1.5})
    header, result = provenance.read_result(str(path))
    assert result == {"value": 1.5}
    assert header["format"] == provenance.FORMAT
    assert header["command"].endswith("--runs 3")
    assert header["git"]["commit"] == _git(ROOT, "rev-parse", "HEAD").strip()
    assert header["git"]["dirty"] == bool(_git(ROOT, "status", "--porcelain", "--", ".", *provenance.NOT_CODE).strip())
    assert header["packages"]["numpy"] == __import__("numpy").__version__
    assert header["host"]["cores"] == os.cpu_count()
    assert set(header["host"]["load_average_1min"]) == {"before", "after"}
    assert header["statistics"] == timing.DEFINITIONS
    assert header["date"].endswith("Z") and len(header["date"]) == 20


def test_steal_is_the_share_of_stolen_jiffies(monkeypatch):
    counters = iter([(10, 1000), (30, 1200)])  # 20 of 200 jiffies stolen
    monkeypatch.setattr(provenance, "_cpu_counters", lambda: next(counters))
    assert provenance.start().header()["host"]["cpu_steal_percent"] == 10.0


def test_dirty_flag_ignores_results_and_prose(tmp_path):
    repo = tmp_path / "repo"
    (repo / "benchmarks" / "results").mkdir(parents=True)
    (repo / "code.py").write_text("x = 1\n")
    (repo / "README.md").write_text("# r\n")
    (repo / "benchmarks" / "results" / "r.json").write_text("{}\n")
    _git(repo.parent, "init", "-q", str(repo))
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    assert provenance.git_state(str(repo))["dirty"] is False
    (repo / "README.md").write_text("# changed\n")
    (repo / "benchmarks" / "results" / "r.json").write_text('{"new": 1}\n')
    (repo / "benchmarks" / "results" / "new.json").write_text("{}\n")
    assert provenance.git_state(str(repo))["dirty"] is False
    (repo / "code.py").write_text("x = 2\n")
    state = provenance.git_state(str(repo))
    assert state["dirty"] is True and state["changed"] == ["code.py"]
    (repo / "code.py").write_text("x = 1\n")
    (repo / "new_module.py").write_text("y = 1\n")
    assert provenance.git_state(str(repo))["changed"] == ["new_module.py"]


@pytest.mark.parametrize("content", [{"rows": []}, {"header": {"command": "x"}, "result": {}}, [1, 2]])
def test_a_result_file_without_the_header_is_one_line(tmp_path, content):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(content))
    with pytest.raises(provenance.ResultFileError, match="result header") as e:
        provenance.read_result(str(path))
    assert "\n" not in str(e.value)


def test_a_header_missing_a_field_is_named(tmp_path):
    header = provenance.start().header()
    del header["host"]
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"header": header, "result": {}}))
    with pytest.raises(provenance.ResultFileError, match="lacks host"):
        provenance.read_result(str(path))


def test_a_goal_defined_twice_is_one_line(tmp_path):
    path = tmp_path / "goals.json"
    path.write_text('{"a": {"at_most": 1}, "b": {"at_least": 2}, "a": {"at_most": 3}}')
    with pytest.raises(goals.GoalError, match="goal 'a' is defined twice") as e:
        goals.load(str(path))
    assert "\n" not in str(e.value)


def test_goal_bounds_and_verdicts(tmp_path):
    path = tmp_path / "goals.json"
    path.write_text('{"fast": {"at_most": 2.5, "what": "ratio"}, "big": {"at_least": 10}, "bad": {}}')
    with pytest.raises(goals.GoalError, match="'bad'.*exactly one"):
        goals.load(str(path))
    path.write_text('{"fast": {"at_most": 2.5, "what": "ratio"}, "big": {"at_least": 10}}')
    loaded = goals.load(str(path))
    assert loaded["fast"].verdict(2.5) == "**met** (2.5 ≤ 2.5)"
    assert loaded["fast"].verdict(3.86, "3.86×") == "**not met** (3.86×, goal ≤ 2.5)"
    assert loaded["big"].met(10) and not loaded["big"].met(9.99)
    with pytest.raises(goals.GoalError, match="no goal 'nope'"):
        goals.goal("nope")


def test_the_committed_goals_file_loads():
    assert goals.goal("build_time_ratio").at_most == 1.10


def _result_file(directory, name, dirty):
    run = provenance.start(argv=["benchmarks/x.py"])
    run.git = {"commit": "0123456789abcdef", "dirty": dirty, "changed": ["a.py"] if dirty else []}
    with open(os.path.join(RESULTS_DIR, name), encoding="utf-8") as f:
        result = json.load(f)["result"]
    run.write(os.path.join(directory, name), result)


def test_a_table_from_a_dirty_tree_says_dirty(tmp_path):
    _result_file(tmp_path, "build_time.json", dirty=True)
    assert "**dirty**" in report.render_region("build_time", str(tmp_path))
    _result_file(tmp_path, "build_time.json", dirty=False)
    clean = report.render_region("build_time", str(tmp_path))
    assert "dirty" not in clean and "commit `0123456`" in clean


def test_a_region_whose_file_is_missing_is_one_line(tmp_path):
    with pytest.raises(report.ReportError, match="build_time.json, which is missing; run `python -m "
                                                 "benchmarks.build_time`") as e:
        report.render_region("build_time", str(tmp_path))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("<!-- results:nope begin -->\n<!-- results:nope end -->", "'nope' is not in benchmarks/registry.py"),
    ("<!-- results:build_time begin -->\n", "no end marker"),
    ("<!-- results:build_time end -->", "without its begin marker"),
    ("<!-- results:statistics begin -->\n<!-- results:statistics end -->\n" * 2, "appears twice"),
])
def test_bad_regions_are_one_line(text, message):
    with pytest.raises(report.ReportError, match=message):
        report.render(text)


def test_registry_refuses_a_region_no_benchmark_writes_and_a_name_twice():
    region = registry.Region("x", "nobody.json", str)
    with pytest.raises(registry.RegistryError, match="no registered benchmark writes"):
        registry.check(registry.BENCHMARKS, (region,))
    with pytest.raises(registry.RegistryError, match="registered twice"):
        registry.check(registry.BENCHMARKS, (registry.REGIONS["statistics"],) * 2)


def test_report_cli_says_a_missing_file_in_one_line(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    bad = subprocess.run([sys.executable, "-m", "benchmarks.report", "--check", "--results-dir", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert bad.returncode == 1 and len(errors) == 1 and "is missing" in errors[0], bad.stderr


def test_a_missing_results_dir_is_refused_before_any_work(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    missing = tmp_path / "nope"
    bad = subprocess.run([sys.executable, "-m", "benchmarks.searched_latency", "--results-dir", str(missing)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert bad.returncode != 0 and errors == [f"error: flag --results-dir={missing}: no such directory; create it or "
                                              "choose another (see --helpshort)"], bad.stderr
    assert not missing.exists()


def test_run_all_selects_registered_benchmarks_only():
    from benchmarks import run_all
    from ef_keras.errors import InputError

    assert [b.module for b in run_all.selected(["import_cost", "build_time"])] == [
        "benchmarks.build_time", "benchmarks.import_cost"]
    assert len(run_all.selected(None)) == len(registry.BENCHMARKS)
    with pytest.raises(InputError, match="unknown benchmarks nope"):
        run_all.selected(["nope"])


_PARSE_REGISTERED_ARGUMENTS = """
import importlib, json, sys
from absl import flags
from benchmarks import registry
failures = []
for b in registry.BENCHMARKS:
    module = importlib.import_module(b.module)
    before = set(flags.FLAGS)
    module.define_flags()
    for args in (b.full, b.quick):
        if args is not None:
            try:
                flags.FLAGS(["x", *args])
            except flags.Error as e:
                failures.append(f"{b.module} {' '.join(args)}: {e}")
            flags.FLAGS.unparse_flags()
    for name in set(flags.FLAGS) - before:
        delattr(flags.FLAGS, name)
print(json.dumps(failures))
"""


def test_every_registered_benchmark_accepts_its_full_and_quick_arguments():
    # One fresh process (the scripts define their flags on absl's global FLAGS, removed again after each).
    out = subprocess.run([sys.executable, "-c", _PARSE_REGISTERED_ARGUMENTS], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
