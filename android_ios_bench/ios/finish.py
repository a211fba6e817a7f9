"""Merge the LUT files the Swift harness wrote on one device and fit their latency correction."""

from __future__ import annotations

import os
from typing import Sequence

from android_ios_bench.lut import LUTError, merge_luts, save_lut
from android_ios_bench.refit import refit_correction
from ef_keras.output import check_output


def finish_lut(luts: Sequence[str | os.PathLike], lut_out: str | os.PathLike, *, overwrite: bool = False) -> dict:
    """Merges `luts` (partial tables of one device, runtime and search space), fits the correction
    on their reference models and writes the result atomically to `lut_out`; returns it.

    The correction is left out (and `correction` absent) when the tables lack units some
    reference model needs, or hold too few reference models to fit one (see `refit_correction`).
    """
    if not luts:
        raise LUTError("give at least one LUT written by efbench or the EFBench app (--lut PATH)")
    lut_out = check_output(lut_out, overwrite=overwrite, suffix=".json", flag="--lut-out", error=LUTError)
    doc = merge_luts([os.fspath(p) for p in luts])
    refit_correction(doc)
    save_lut(doc, lut_out)
    return doc
