"""Realistic stand-in weights for conversion tests and benchmarks without a checkpoint.

A freshly initialised EfficientFormer has zero biases, zero attention-bias tables, unit
BatchNorm statistics and 1e-5 layer scales. The converters fold all of those away (a zero
bias add disappears from the graph), so op censuses, latencies and numeric checks on such
a model are not representative of a trained one. `randomize_weights` gives every variable
a plausible non-trivial value instead, keeping outputs at about unit scale.
"""

from __future__ import annotations

import numpy as np


def randomize_weights(model, seed: int = 0):
    """Sets every variable of `model` to seeded random values of a trained-like scale; returns the model."""
    rng = np.random.default_rng(seed)
    for var in model.weights:
        shape, name = tuple(var.shape), var.path
        if "moving_variance" in name:
            value = rng.uniform(0.5, 1.5, shape)
        elif "moving_mean" in name or name.endswith("beta") or name.endswith("bias"):
            value = rng.normal(0.0, 0.1, shape)
        elif name.endswith("gamma"):
            value = rng.uniform(0.8, 1.2, shape)
        elif "layer_scale" in name:
            value = rng.uniform(0.05, 0.3, shape)
        elif "attention_biases" in name:
            value = rng.normal(0.0, 0.5, shape)
        elif len(shape) >= 2:  # conv / dense kernels: He-like scale over the fan-in
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(0.0, np.sqrt(1.0 / fan_in), shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
        var.assign(value.astype(var.dtype))
    return model
