"""The lean core install, its extras, and the one CLI convention (issue 10, items 3 and 4).

`pip install ef-keras` holds only what models, layers, configs and checkpoint import need;
converters, data pipelines and the search's tools are the `deploy`, `data` and `search`
extras. A core install is simulated here by an import hook that makes the extras' packages
unimportable, exactly as if they were not installed (TensorFlow and Keras then skip their
own optional imports of them, as they do in a real core install).
"""

import ast
import json
import os
import re
import subprocess
import sys

import pytest
from absl import flags
from helpers import TINY

from ef_keras.cli import dashed_argv

from ef_keras.errors import MissingExtraError, require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("ef_keras", "deploy", "search", "android_ios_bench")
#: Import name -> the distribution that provides it (where the two differ).
DISTRIBUTIONS = {"PIL": "pillow", "sklearn": "scikit-learn", "tensorflow_datasets": "tensorflow-datasets",
                 "ai_edge_litert": "ai-edge-litert", "absl": "absl-py"}
#: What the extras provide: none of it may be needed to import ef_keras.
EXTRA_MODULES = ("coremltools", "tensorflow_datasets", "matplotlib", "scipy", "sklearn", "PIL", "tf2onnx", "onnx",
                 "onnxruntime", "ai_edge_litert", "jsonschema", "referencing")
#: Prepended to a subprocess: the extras' packages cannot be imported, as in a core install.
CORE_ONLY = f"""
import importlib.abc, sys
class _CoreInstall(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRA_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _CoreInstall())
"""
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
TF_LOG = re.compile(r"^(WARNING: All log messages before absl::InitializeLog"
                    r"|[IWEF]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] )")


def _python(code, cwd=ROOT):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


def _setup_lists():
    """INSTALL_REQUIRES and the extras' lists, evaluated from setup.py's assignments (no install needed)."""
    names = {"sorted": sorted, "set": set}
    for node in ast.parse(open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            names[node.targets[0].id] = eval(compile(ast.Expression(node.value), "setup.py", "eval"), names)
    return names


def _setup_call():
    """The keyword arguments of setup.py's setup(...) call that are literals or names of those lists."""
    names = _setup_lists()
    tree = ast.parse(open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "setup")
    return {k.arg: eval(compile(ast.Expression(k.value), "setup.py", "eval"), names) for k in call.keywords
            if k.arg in ("install_requires", "extras_require", "entry_points")}


def _dist(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_import_ef_keras_works_without_any_extra_and_builds_a_model():
    proc = _python(CORE_ONLY + f"""
import ef_keras
model = ef_keras.EfficientFormer(ef_keras.EfficientFormerConfig.from_dict({json.dumps(TINY.to_dict())}),
                                 input_shape=(64, 64, 3), classes=3)
print(model.output_shape)
""")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("(None, 3)")


def test_import_ef_keras_adds_no_extra_to_what_tensorflow_and_keras_load():
    # In a full install TensorFlow and Keras themselves import scipy, sklearn, matplotlib and PIL when they are
    # present; ef_keras must add none of the extras on top of them.
    proc = _python(f"""
import sys
import keras, tensorflow
before = set(sys.modules)
import ef_keras
print(sorted(m for m in set(sys.modules) - before if m.split(".")[0] in {EXTRA_MODULES!r}))
""")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_every_tool_module_imports_without_extras():
    # The extras are imported where they are used, so every module (and each CLI's --help) loads in a core install.
    modules = sorted(
        os.path.relpath(os.path.join(d, f), ROOT)[:-3].replace(os.sep, ".") for pkg in PACKAGES
        for d, _, files in os.walk(os.path.join(ROOT, pkg)) for f in files
        if f.endswith(".py") and f != "__main__.py" and "__pycache__" not in d)
    proc = _python(CORE_ONLY + f"""
import importlib
for name in {modules!r}:
    importlib.import_module(name.removesuffix(".__init__"))
print("ok")
""")
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_keras_hub_classes_without_keras_hub_say_which_extra_to_install():
    # They subclass keras-hub's classes, so their modules need it at import; `import ef_keras` does not.
    proc = _python(CORE_ONLY.replace(repr(EXTRA_MODULES), repr(("keras_hub",))) + """
import ef_keras
try:
    ef_keras.EfficientFormerV2ImageClassifier
except ef_keras.errors.MissingExtraError as e:
    print(e)
""")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == (
        'the keras-hub classes (EfficientFormerBackbone, ...) needs the keras-hub package, which is not installed: '
        'pip install "ef-keras[dense]"')


def test_a_cli_needing_a_missing_extra_says_which_to_install_in_one_line(tmp_path):
    (tmp_path / "tiny.json").write_text(json.dumps(TINY.to_dict()))
    proc = _python(CORE_ONLY + """
import sys
sys.argv = ["ef-convert", "--to", "onnx", "--model", "tiny.json", "--image-size", "64"]
from deploy.convert import run
run()
""", cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not TF_LOG.match(line)]
    assert proc.returncode == 1, proc.stderr[-3000:]
    # The first extra the conversion reaches (pillow for the verification images, or tf2onnx) is named.
    assert len(lines) == 1 and re.fullmatch(r'error: [\w ]+ needs the \w+ package, which is not installed: '
                                            r'pip install "ef-keras\[deploy\]"', lines[0]), proc.stderr[-3000:]
    assert sorted(os.listdir(tmp_path)) == ["tiny.json"]


def test_require_names_the_extra_and_keeps_a_broken_package_a_bug(tmp_path, monkeypatch):
    assert require("json", "data", "x") is json
    with pytest.raises(MissingExtraError, match=r'^the chart needs the no_such_pkg_ef package, which is not '
                                                r'installed: pip install "ef-keras\[search\]"$') as info:
        require("no_such_pkg_ef.sub", "search", "the chart")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    # Installed but broken inside (its own dependency is missing): not a missing extra, so no one-liner.
    (tmp_path / "broken_pkg_ef").mkdir()
    (tmp_path / "broken_pkg_ef" / "__init__.py").write_text("import dependency_that_is_not_there_ef\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        require("broken_pkg_ef", "deploy", "x")
    assert not isinstance(info.value, MissingExtraError)


def _is_require_call(node) -> bool:
    """`require("package.module", extra, feature)`: an import written as a string (ef_keras.errors.require)."""
    return (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require" and node.args
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))


def test_every_third_party_import_is_declared_in_the_core_or_an_extra():
    call = _setup_call()
    declared = {_dist(r) for r in call["install_requires"]}
    declared |= {_dist(r) for extra in call["extras_require"].values() for r in extra}
    imported = {}
    for pkg in PACKAGES:
        for d, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in (f for f in files if f.endswith(".py")):
                path = os.path.join(d, f)
                for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                    names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                             [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else
                             [node.args[0].value] if _is_require_call(node) else [])
                    for top in {n.split(".")[0] for n in names if n}:
                        if top not in sys.stdlib_module_names and top not in PACKAGES:
                            imported.setdefault(_dist(DISTRIBUTIONS.get(top, top)), os.path.relpath(path, ROOT))
    assert {"coremltools", "tf2onnx", "matplotlib", "tensorflow-datasets"} <= set(imported)  # the scan sees require()
    undeclared = {dist: where for dist, where in imported.items() if dist not in declared}
    assert undeclared == {}, "declare these in setup.py (core or an extra)"


def test_the_core_install_is_lean_and_all_holds_every_extra():
    call = _setup_call()
    core = {_dist(r) for r in call["install_requires"]}
    assert core == {"tensorflow", "keras", "numpy", "absl-py", "safetensors"}
    extras = call["extras_require"]
    assert set(extras) >= {"data", "deploy", "search", "dense", "all", "test"}
    everything = {r for name in ("data", "deploy", "search", "dense") for r in extras[name]}
    assert set(extras["all"]) == everything
    assert "jax" not in {_dist(r) for r in extras["all"]}  # test-only: [all] stays the main job's lean install


def _constraints() -> dict:
    """constraints.txt as {distribution: version}."""
    text = open(os.path.join(ROOT, "constraints.txt"), encoding="utf-8").read()
    return {_dist(line): line.split("==")[1] for line in text.splitlines() if line and not line.startswith("#")}


def test_requirements_are_ranges_on_tensorflow_and_the_tested_pins_live_in_constraints():
    # A library's exact pins block every other upgrade in the user's environment, and `tensorflow-cpu` would be a
    # second distribution written over a user's `tensorflow` package; the tested set is constraints.txt.
    call = _setup_call()
    requirements = list(call["install_requires"]) + [r for extra in call["extras_require"].values() for r in extra]
    assert [r for r in requirements if "==" in r] == []
    assert [r for r in requirements if _dist(r) in ("tensorflow-cpu", "tensorflow-intel")] == []
    pins = _constraints()
    # [torch] (reading .pth files) is installed by neither set-up command, so no tested version of it exists here.
    requirements = [r for r in requirements if _dist(r) != "torch"]
    assert {_dist(r) for r in requirements} <= set(pins), "pin every declared distribution in constraints.txt"
    assert pins["tensorflow"].startswith("2.21.") and "tensorflow-cpu" not in pins
    for r in requirements:  # each range admits the tested version (its lower bound is what was tested)
        name, bound = re.fullmatch(r"([\w.-]+)>=([\d.]+)", r).groups()
        tested = tuple(int(x) for x in pins[_dist(name)].split(".")[:len(bound.split("."))])
        assert tested >= tuple(int(x) for x in bound.split(".")), r


def test_the_readme_set_up_commands_and_ci_apply_the_constraints():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    main_job = 'pip install ".[all]" -c constraints.txt && python -m search.slim --target-like l1'
    tests = 'pip install ".[all,test]" -c constraints.txt && python -m pytest'
    assert f"python3 -m venv .venv && . .venv/bin/activate && {main_job}\n" in readme
    from benchmarks.main_job import COMMAND  # the benchmark times exactly the README's main job

    assert f"{COMMAND}\n" in readme
    assert f"python3 -m venv .venv && . .venv/bin/activate && {tests}\n" in readme
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    assert f"python3 -m venv .venv && . .venv/bin/activate && {tests.replace('install', 'install -q')}\n" in ci


def test_every_tool_has_a_console_script_that_resolves():
    import importlib

    scripts = dict(s.split("=") for s in _setup_call()["entry_points"]["console_scripts"])
    assert {"ef-convert", "ef-train", "ef-train-supernet", "ef-slim", "ef-lut", "ef-analysis",
            "ef-describe"} <= set(scripts)
    for name, target in scripts.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name


def test_dashed_argv_accepts_the_underscore_spelling_of_defined_flags_only():
    fv = flags.FlagValues()
    flags.DEFINE_string("target-like", None, "", flag_values=fv)
    flags.DEFINE_boolean("check-drift", False, "", flag_values=fv)
    flags.DEFINE_multi_string("benchmark-arg", [], "", flag_values=fv)
    argv = ["prog", "--target_like=l1", "--nocheck_drift", "--check_drift", "--benchmark-arg", "--use_xnnpack=false",
            "--unknown_flag", "positional_arg"]
    assert dashed_argv(argv, fv) == ["prog", "--target-like=l1", "--nocheck-drift", "--check-drift",
                                     "--benchmark-arg", "--use_xnnpack=false", "--unknown_flag", "positional_arg"]
    fv(dashed_argv(["prog", "--target_like", "l3", "--nocheck_drift"], fv))
    assert fv["target-like"].value == "l3" and fv["check-drift"].value is False


@pytest.mark.parametrize("argv", [["--target_like", "l1"], ["--target-like", "l1"]])
def test_slim_takes_both_spellings(argv, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "search.slim", "--target", "12", *argv, "--out", "o"], cwd=tmp_path,
                          env=ENV, capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not TF_LOG.match(line)]
    assert proc.returncode == 1 and lines == ["error: give exactly one of --target MS or --target-like l1|l3|l7"], \
        proc.stderr[-3000:]
