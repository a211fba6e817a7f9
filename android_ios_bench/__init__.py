"""android_ios_bench: on-device latency measurement for EfficientFormer.

One latency lookup table (LUT) format (`lut`, JSON Schemas in `schema/`), the measured units
as tiny Keras models (`units`), their export to TFLite/CoreML plus a manifest (`export`), the
host harness (`host`, LiteRT + XNNPACK) and the embedded default LUT measured with it
(`luts/`). The Android and iOS harnesses fill the same format; `android_ios_bench.predictor.predict` reads it.
"""

__version__ = "0.1.0"
