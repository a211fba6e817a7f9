"""The iPhone / Mac harness: Swift (`efbench` CLI, EFBench app) times CoreML; Python finishes its LUT.

The Swift package in this directory (see README.md) times a manifest's CoreML micro-models and
whole reference models on the device and writes a LUT (android_ios_bench/schema) with
`reference_models` but no `correction`: fitting one needs the predictor, which is Python.
`finish_lut` merges the device's LUT files and fits the correction exactly as the host and
Android harnesses do (`refit.refit_correction`):

    python -m android_ios_bench.ios --lut iphone12_all.json [--lut part2.json] --lut-out iphone12.json
"""

from android_ios_bench.ios.finish import finish_lut

__all__ = ["finish_lut"]
