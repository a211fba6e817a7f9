"""An earlier commit's tree, exported for a before/after benchmark (`git archive`: no worktree, no index)."""

from __future__ import annotations

import os
import subprocess

from benchmarks import ROOT


def short_commit(rev: str) -> str:
    """The abbreviated hash of `rev` in this repository."""
    return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", rev], check=True, capture_output=True,
                          text=True).stdout.strip()


def export_commit(rev: str, dest: str) -> str:
    """Writes the committed tree of `rev` into `dest` (created; re-used if it holds files) and returns `dest`."""
    if os.path.isdir(dest) and os.listdir(dest):
        return dest
    os.makedirs(dest, exist_ok=True)
    tar = subprocess.run(["git", "-C", ROOT, "archive", "--format=tar", rev], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", dest], input=tar.stdout, check=True)
    return dest
