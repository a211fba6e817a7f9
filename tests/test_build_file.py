"""Keeps the Bazel BUILD file in step with the tree (Bazel cannot fetch its rules offline here).

Every module of every package must be in that package's `py_library`, and every test file must
have a `py_test`. BUILD is Starlark, a Python subset, so `ast` reads it.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ["ef_keras", "deploy", "search", "android_ios_bench"]


def _rules():
    rules = {}
    for node in ast.walk(ast.parse((ROOT / "BUILD").read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords
                      if isinstance(k.value, (ast.Constant, ast.List))}
            rules.setdefault(node.func.id, []).append(kwargs)
    return rules


def test_every_package_module_is_in_a_py_library():
    listed = {src for rule in _rules().get("py_library", []) for src in rule.get("srcs", [])}
    modules = {str(p.relative_to(ROOT)) for pkg in PACKAGES if (ROOT / pkg).is_dir()
               for p in (ROOT / pkg).rglob("*.py")}
    assert modules, "no package modules found"
    assert sorted(modules - listed) == [], "add these modules to a py_library in BUILD"
    assert sorted(src for src in listed if not (ROOT / src).is_file()) == [], "BUILD lists files that do not exist"


def test_every_test_file_has_a_py_test():
    tests = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")}
    covered = {src for rule in _rules().get("py_test", []) for src in rule.get("srcs", [])}
    assert sorted(tests - covered) == [], "add a py_test for these files to BUILD"
    assert sorted(covered - tests) == [], "BUILD has py_test targets for missing files"
