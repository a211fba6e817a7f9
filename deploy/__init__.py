"""Verified conversion of Keras models (EfficientFormer or any single-input model) to TFLite, CoreML and ONNX.

    import deploy
    report = deploy.to_tflite(model, "l1.tflite")                  # fp32, builtin ops, batch 1
    report = deploy.to_tflite(model, "l1_int8.tflite", precision="int8", calibration_data="images/")
    report = deploy.to_coreml(model, "l1.mlpackage")               # ML program, iOS 16, fp16 compute
    report = deploy.to_onnx(model, "l1.onnx")                      # opset 17, checked with onnxruntime

Every conversion is verified against the Keras model before the file is moved into place,
and writes a JSON report next to it (`<out>.report.json`). Errors are `DeployError`
(a `ValueError`) with a one-line message. The CLI is `python deploy/convert.py`.
"""

from deploy.common import DeployError
from deploy.coreml import to_coreml
from deploy.onnx_export import to_onnx
from deploy.tflite import to_tflite

__all__ = ["DeployError", "to_tflite", "to_coreml", "to_onnx"]
