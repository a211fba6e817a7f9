"""search: EfficientFormer's latency-driven architecture search (supernet, slimming) and the LUT predictor.

`android_ios_bench.predictor.predict(config, lut)` gives an architecture's latency from a measured lookup table.
"""
