"""search: EfficientFormer's latency-driven architecture search (supernet, slimming).

`python -m search.slim --target-like l1` is the main job. The latency of an architecture comes
from `android_ios_bench.predictor.predict(config, lut)`.
"""

import os

# The search's tools are command-line jobs whose logs people read: TensorFlow's C++ start-up notices
# (oneDNN, CPU features) would open every log. A user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
