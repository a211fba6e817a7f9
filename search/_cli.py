"""Command-line helpers shared by the search CLIs."""

import sys


def dashed_flags(argv=None):
    """argv with `--foo-bar[=v]` rewritten to absl's `--foo_bar[=v]`, so both spellings work."""
    out = []
    for arg in sys.argv if argv is None else argv:
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            arg = "--" + name.replace("-", "_") + eq + value
        out.append(arg)
    return out
