"""The paper's Section 3 latency analysis as a runnable experiment on any backend.

    python -m android_ios_bench.analysis --out DIR                    # measure here (LiteRT/XNNPACK)
    python -m android_ios_bench.analysis --export-only --models-dir M [--coreml]   # for a phone
    python -m android_ios_bench.analysis --lut-from LUT.json --out DIR   # report a phone's LUT

Four observations (Li et al. 2022, §3; facts file §5), each a group of micro-models
(`micro_models`): (a) large-kernel patch embedding vs the 3×3-s2 conv stem, (b) pool mixer vs
MHSA on consistent 3D tokens vs MHSA with 4D↔3D switches around every block (LeViT-style),
(c) Conv-BN (folded) vs LayerNorm-Linear, (d) GELU vs ReLU vs HardSwish. Output: a CSV and
markdown table, a Figure-2-style PNG and a one-line verdict per observation (`report`).
"""

from android_ios_bench.analysis.micro_models import REDUCED, SIZES, Observation, Sizes, Variant, observations
from android_ios_bench.analysis.pipeline import (BACKENDS, AnalysisError, analysis_items, analysis_key,
                                                 default_models_dir, export_analysis, rows_from_lut, run_analysis)

__all__ = ["REDUCED", "SIZES", "Observation", "Sizes", "Variant", "observations", "BACKENDS", "AnalysisError",
           "analysis_items", "analysis_key", "default_models_dir", "export_analysis", "rows_from_lut",
           "run_analysis"]
