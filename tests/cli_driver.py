"""Runs many invocations of one CLI in one process, so TensorFlow is imported once, not per case.

    python tests/cli_driver.py MODULE CASES.json RESULTS.json

CASES.json is a list of {"id", "cwd", "argv"}. The module's flags are defined once
(`define_flags()`); each case then goes through what the module's `run()` does
(`ef_keras.errors.dashed_argv` and `parse_flags`, then `cli_main(main, USER_ERRORS)`), with
absl's flags reset to their defaults, the working directory set to "cwd" and file
descriptor 2 redirected, so C++ log lines are captured too. RESULTS.json maps each id
to {"rc", "stderr"}. Used by tests/test_bad_input.py.
"""

import importlib
import json
import os
import sys
import tempfile
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_case(module, argv):
    """Exit code of one CLI invocation (flag parsing included)."""
    from ef_keras.cli import cli_main, dashed_argv, parse_flags

    try:
        return cli_main(module.main, getattr(module, "USER_ERRORS", ()))(
            parse_flags(dashed_argv([module.__name__, *argv])))
    except SystemExit as e:
        return e.code
    except Exception:  # a bug: what Python itself would do, a traceback and exit code 1
        traceback.print_exc()
        return 1


def main(module_name, cases_path, results_path):
    from absl import flags

    module = importlib.import_module(module_name)
    module.define_flags()
    with open(cases_path, encoding="utf-8") as f:
        cases = json.load(f)
    results = {}
    for case in cases:
        flags.FLAGS.unparse_flags()
        os.chdir(case["cwd"])
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as err:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(err.fileno(), 2)
            try:
                rc = run_case(module, case["argv"])
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
            err.seek(0)
            results[case["id"]] = {"rc": rc, "stderr": err.read()}
    with open(results_path, "w", encoding="utf-8") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
