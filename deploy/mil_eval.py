"""An independent NumPy evaluator for Core ML ML programs, so Linux CI checks CoreML numerics.

Core ML itself only runs on macOS (`predict` raises elsewhere). This module reads a saved
`.mlpackage` the way Core ML does -- the `Model.mlProgram` protobuf plus the weight blob
file -- and executes its `main` function op by op with NumPy, implementing the MIL
operation semantics (iOS 16 opset) independently of the converter that produced them.
It covers the ops that Keras CNN/transformer models such as EfficientFormer lower to:
conv, linear, matmul, element-wise arithmetic, avg/max pooling (with or without padding in
the average), reshape, transpose, squeeze/expand_dims, slicing, concat, gather, softmax,
gelu, layer/batch norm, reductions, pad, cast, bilinear upsampling (EfficientFormerV2) and
the 8-bit weight dequantisation op.
An op it does not know raises `MilEvalError` naming it, rather than guessing.

Precision: every op computes in float32 and, when the program declares the op's output as
fp16, rounds its result to float16 (round-to-nearest-even, as Core ML's casts do). Weights
and activations of an fp16 program therefore carry exactly fp16 values, with fp32
accumulation inside convolutions and matmuls -- the behaviour of Core ML's GPU and Neural
Engine back ends, to the extent that rounding order can be emulated on a CPU.
"""

from __future__ import annotations

import math
import os

import numpy as np

from deploy.common import DeployError
from ef_keras.errors import require


class MilEvalError(DeployError):
    """The ML program uses something this evaluator does not implement."""


_DTYPES = {10: np.float16, 11: np.float32, 12: np.float64, 1: np.bool_, 21: np.int8, 22: np.int16, 23: np.int32,
           24: np.int64, 31: np.uint8, 32: np.uint16, 33: np.uint32, 34: np.uint64}
_CAST = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int16": np.int16, "int8": np.int8,
         "uint8": np.uint8, "bool": np.bool_, "fp64": np.float64, "int64": np.int64}
_BLOB_READERS = {10: "read_fp16_data", 11: "read_float_data", 21: "read_int8_data", 31: "read_uint8_data",
                 22: "read_int16_data", 32: "read_uint16_data", 23: "read_int32_data", 33: "read_uint32_data"}


def main_block(spec):
    """The main function's block of an ML program spec (the opset's specialisation)."""
    function = spec.mlProgram.functions["main"]
    return function.block_specializations[function.opset]


def block_census(block) -> dict:
    """{MIL op type: count} of a program block's operations, constants excluded."""
    counts = {}
    for op in block.operations:
        if op.type != "const":
            counts[op.type] = counts.get(op.type, 0) + 1
    return dict(sorted(counts.items()))


class MilProgram:
    """The `main` function of a saved `.mlpackage`, ready to evaluate with `run`."""

    def __init__(self, package_path: str):
        ct = require("coremltools", "deploy", "Core ML verification")

        self.path = package_path
        spec = ct.utils.load_spec(package_path)
        if spec.WhichOneof("Type") != "mlProgram":
            raise MilEvalError(f"{package_path} is not an ML program (got {spec.WhichOneof('Type')})")
        self.weights_dir = os.path.join(package_path, "Data", "com.apple.CoreML", "weights")
        function = spec.mlProgram.functions["main"]
        self.block = main_block(spec)
        self.input_names = [i.name for i in function.inputs]
        self.input_shapes = {i.name: tuple(d.constant.size for d in i.type.tensorType.dimensions)
                             for i in function.inputs}
        self.output_names = list(self.block.outputs)
        self._readers = {}

    def op_census(self) -> dict:
        """{MIL op type: count}, constants excluded."""
        return block_census(self.block)

    def run(self, feeds: dict) -> dict:
        """Evaluates the program on `feeds` ({input name: array}); returns {output name: array}."""
        env = {}
        for name in self.input_names:
            if name not in feeds:
                raise MilEvalError(f"missing input {name!r}")
            env[name] = np.asarray(feeds[name])
        for op in self.block.operations:
            args = {key: self._argument(arg, env) for key, arg in op.inputs.items()}
            if op.type.startswith("constexpr_"):  # constexpr ops take their operands as attributes
                args.update({k: self._value(v) for k, v in op.attributes.items() if k != "name"})
            if op.type == "const":
                results = [self._value(op.attributes["val"])]
            else:
                fn = _OPS.get(op.type)
                if fn is None:
                    raise MilEvalError(f"MIL op {op.type!r} is not implemented by deploy.mil_eval")
                results = fn(**args)
                results = results if isinstance(results, (list, tuple)) else [results]
            for out, value in zip(op.outputs, results):
                env[out.name] = _as_declared(value, out.type)
        return {name: env[name] for name in self.output_names}

    # ---------------------------------------------------------------- values
    def _argument(self, arg, env):
        values = []
        for binding in arg.arguments:
            if binding.WhichOneof("binding") == "name":
                values.append(env[binding.name])
            else:
                values.append(self._value(binding.value))
        return values[0] if len(values) == 1 else values

    def _value(self, value):
        tensor_type = value.type.tensorType
        dtype = _DTYPES.get(tensor_type.dataType)
        shape = tuple(d.constant.size for d in tensor_type.dimensions)
        kind = value.WhichOneof("value")
        if kind == "blobFileValue":
            reader_name = _BLOB_READERS.get(tensor_type.dataType)
            if reader_name is None:
                raise MilEvalError(f"weight blob of data type {tensor_type.dataType} is not supported")
            data = np.asarray(getattr(self._reader(value.blobFileValue.fileName), reader_name)(
                value.blobFileValue.offset))
            if tensor_type.dataType == 10:  # the reader returns fp16 as raw uint16 bit patterns
                data = data.astype(np.uint16).view(np.float16)
            return data.astype(dtype).reshape(shape)
        immediate = value.immediateValue
        if immediate.WhichOneof("value") in ("list", "tuple"):
            return [self._value(v) for v in getattr(immediate, immediate.WhichOneof("value")).values]
        tensor = immediate.tensor
        field = tensor.WhichOneof("value")
        if field == "strings":
            items = list(tensor.strings.values)
            return items[0] if not shape and len(items) == 1 else items
        if field == "bytes":
            array = np.frombuffer(tensor.bytes.values, dtype=dtype).copy()
        else:
            array = np.array(list(getattr(tensor, field).values), dtype=dtype)
        return array.reshape(shape)

    def _reader(self, file_name: str):
        from coremltools import libmilstoragepython

        path = os.path.join(self.weights_dir, os.path.basename(file_name))
        if path not in self._readers:
            self._readers[path] = libmilstoragepython._BlobStorageReader(path)
        return self._readers[path]


def _as_declared(value, value_type):
    """Casts a result to the dtype the program declares for it (fp16 rounding happens here)."""
    if isinstance(value, (str, list)) or not value_type.HasField("tensorType"):
        return value
    dtype = _DTYPES.get(value_type.tensorType.dataType)
    array = np.asarray(value)
    return array.astype(dtype) if dtype is not None and array.dtype != dtype else array


# -------------------------------------------------------------------- op semantics
def _f32(x):
    return np.asarray(x, dtype=np.float32) if np.asarray(x).dtype.kind == "f" else np.asarray(x)


def _cast(x, dtype):
    if dtype not in _CAST:
        raise MilEvalError(f"cast to {dtype!r} is not implemented")
    return np.asarray(x).astype(_CAST[dtype])


def _binary(fn):
    return lambda x, y: fn(_f32(x), _f32(y))


def _reduce(fn):
    def reduce(x, axes=None, keep_dims=False):
        axes = None if axes is None else tuple(int(a) for a in np.atleast_1d(axes))
        return fn(_f32(x), axis=axes, keepdims=bool(keep_dims))
    return reduce


def _gelu(x, mode="EXACT"):
    x = _f32(x).astype(np.float64)
    if mode == "EXACT":
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x / (1.0 + np.exp(-1.702 * x))
    raise MilEvalError(f"gelu mode {mode!r} is not implemented")


def _erf(x):
    special = require("scipy.special", "deploy", "Core ML verification on Linux (deploy.mil_eval)")
    return special.erf(_f32(x).astype(np.float64))


def _softmax(x, axis=-1):
    x = _f32(x)
    e = np.exp(x - x.max(axis=int(axis), keepdims=True))
    return e / e.sum(axis=int(axis), keepdims=True)


def _layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    x = _f32(x)
    axes = tuple(int(a) for a in np.atleast_1d(axes)) if axes is not None else tuple(range(x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + float(epsilon))
    return y * (1.0 if gamma is None else _f32(gamma)) + (0.0 if beta is None else _f32(beta))


def _batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    x = _f32(x)
    shape = (1, -1) + (1,) * (x.ndim - 2)  # channel axis 1 (NCHW / NC...)
    y = (x - _f32(mean).reshape(shape)) / np.sqrt(_f32(variance).reshape(shape) + float(epsilon))
    if gamma is not None:
        y = y * _f32(gamma).reshape(shape)
    return y + (0.0 if beta is None else _f32(beta).reshape(shape))


def _spatial_pads(x_shape, kernel, strides, dilations, pad_type, pad):
    """[(before, after)] per spatial dim for MIL pad_type valid / same / same_lower / custom."""
    spatial = x_shape[2:]
    if pad_type == "valid":
        return [(0, 0)] * len(spatial)
    if pad_type == "custom":
        pad = [int(p) for p in np.atleast_1d(pad)]
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(len(spatial))]
    if pad_type in ("same", "same_lower"):
        pads = []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if pad_type == "same" else (big, small))
        return pads
    raise MilEvalError(f"pad_type {pad_type!r} is not implemented")


def _windows(x, kernel, strides, dilations):
    """(N, C, out_h, out_w, kh, kw) strided windows of a padded NCHW tensor (2D only)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    view = np.lib.stride_tricks.sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw]


def _conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    x, weight = _f32(x), _f32(weight)
    if x.ndim != 4:
        raise MilEvalError(f"conv on a rank-{x.ndim} input is not implemented (2D convolutions only)")
    kernel = weight.shape[2:]
    strides = tuple(int(s) for s in (strides if strides is not None else (1, 1)))
    dilations = tuple(int(d) for d in (dilations if dilations is not None else (1, 1)))
    pads = _spatial_pads(x.shape, kernel, strides, dilations, pad_type, pad)
    x = np.pad(x, [(0, 0), (0, 0)] + pads)
    groups = int(groups)
    cin_g, cout_g = x.shape[1] // groups, weight.shape[0] // groups
    outs = []
    for g in range(groups):
        win = _windows(x[:, g * cin_g:(g + 1) * cin_g], kernel, strides, dilations)
        w = weight[g * cout_g:(g + 1) * cout_g]
        outs.append(np.einsum("nchwij,ocij->nohw", win, w, optimize=True))
    y = np.concatenate(outs, axis=1)
    return y if bias is None else y + _f32(bias).reshape(1, -1, 1, 1)


def _pool(reducer):
    def pool(x, kernel_sizes, strides, pad_type, pad=None, exclude_padding_from_average=False, ceil_mode=False):
        x = _f32(x)
        if x.ndim != 4:
            raise MilEvalError(f"pooling on a rank-{x.ndim} input is not implemented (2D pooling only)")
        if ceil_mode:
            raise MilEvalError("pooling with ceil_mode=True is not implemented")
        kernel = tuple(int(k) for k in kernel_sizes)
        strides = tuple(int(s) for s in strides)
        pads = _spatial_pads(x.shape, kernel, strides, (1, 1), pad_type, pad)
        if reducer == "max":
            win = _windows(np.pad(x, [(0, 0), (0, 0)] + pads, constant_values=-np.inf), kernel, strides, (1, 1))
            return win.max(axis=(-2, -1))
        total = _windows(np.pad(x, [(0, 0), (0, 0)] + pads), kernel, strides, (1, 1)).sum(axis=(-2, -1))
        if exclude_padding_from_average:
            ones = np.pad(np.ones((1, 1) + x.shape[2:], np.float32), [(0, 0), (0, 0)] + pads)
            count = _windows(ones, kernel, strides, (1, 1)).sum(axis=(-2, -1))
        else:
            count = float(np.prod(kernel))
        return total / count
    return pool


def _matmul(x, y, transpose_x=False, transpose_y=False):
    x, y = _f32(x), _f32(y)
    if transpose_x:
        x = np.swapaxes(x, -1, -2)
    if transpose_y:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


def _linear(x, weight, bias=None):
    y = np.matmul(_f32(x), _f32(weight).T)
    return y if bias is None else y + _f32(bias)


def _reshape(x, shape):
    shape = [int(s) for s in np.atleast_1d(shape)]
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]  # MIL: 0 copies the input dim
    return np.reshape(x, shape)


def _squeeze(x, axes=None):
    return np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(int(a) for a in np.atleast_1d(axes)))


def _expand_dims(x, axes):
    for axis in sorted(int(a) for a in np.atleast_1d(axes)):
        x = np.expand_dims(x, axis if axis >= 0 else axis + x.ndim + 1)
    return x


def _slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    rank = np.ndim(x)
    stride = np.ones(rank, int) if stride is None else np.atleast_1d(stride)
    begin_mask = np.zeros(rank, bool) if begin_mask is None else np.atleast_1d(begin_mask)
    end_mask = np.zeros(rank, bool) if end_mask is None else np.atleast_1d(end_mask)
    squeeze_mask = np.zeros(rank, bool) if squeeze_mask is None else np.atleast_1d(squeeze_mask)
    index = []
    for i in range(rank):
        if squeeze_mask[i]:
            index.append(int(begin[i]))
            continue
        b = None if begin_mask[i] else int(begin[i])
        e = None if end_mask[i] else int(end[i])
        index.append(slice(b, e, int(stride[i])))
    return np.asarray(x)[tuple(index)]


def _slice_by_size(x, begin, size):
    index = tuple(slice(int(b), None if int(s) == -1 else int(b) + int(s)) for b, s in zip(begin, size))
    return np.asarray(x)[index]


def _pad(x, pad, mode="constant", constant_val=0.0):
    pad = [int(p) for p in np.atleast_1d(pad)]
    x = np.asarray(x)
    widths = [(0, 0)] * (x.ndim - len(pad) // 2) + [(pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]
    if mode == "constant":
        return np.pad(x, widths, constant_values=float(constant_val))
    if mode in ("reflect", "replicate"):
        return np.pad(x, widths, mode="reflect" if mode == "reflect" else "edge")
    raise MilEvalError(f"pad mode {mode!r} is not implemented")


def _concat(values, axis, interleave=False):
    if interleave:
        raise MilEvalError("concat with interleave=True is not implemented")
    values = values if isinstance(values, list) else [values]
    return np.concatenate([np.asarray(v) for v in values], axis=int(axis))


def _split(x, axis, num_splits=None, split_sizes=None):
    if split_sizes is not None:
        return np.split(x, np.cumsum([int(s) for s in split_sizes])[:-1], axis=int(axis))
    return np.split(x, int(num_splits), axis=int(axis))


def _gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
    if int(batch_dims):
        raise MilEvalError("gather with batch_dims > 0 is not implemented")
    return np.take(x, np.asarray(indices).astype(np.int64), axis=int(axis))


def _affine_dequantize(quantized_data, zero_point, scale, axis):
    """constexpr_affine_dequantize (iOS 16): (q - zero_point) * scale, broadcast along `axis`."""
    q = np.asarray(quantized_data).astype(np.float32)
    shape = [1] * q.ndim
    zp, sc = np.asarray(zero_point, np.float32), np.asarray(scale, np.float32)
    if zp.ndim:
        shape[int(axis)] = -1
        zp = zp.reshape(shape)
    if sc.ndim:
        shape[int(axis)] = -1
        sc = sc.reshape(shape)
    return (q - zp) * sc


def _classify(probabilities, classes):
    """Classifier head: (top label, the score vector that Core ML exposes as a {label: score} dict)."""
    scores = np.asarray(probabilities)
    return [classes[int(np.argmax(scores.reshape(-1)))], scores]


def _clip(x, alpha, beta):
    return np.clip(_f32(x), float(alpha), float(beta))


def _upsample_bilinear(x, scale_factor_height=1, scale_factor_width=1, align_corners=False,
                       half_pixel_centers=None):
    """MIL `upsample_bilinear` on the last two axes (H, W) of x; output size floor(size x scale).

    Source coordinate of output index d: d·(in-1)/(out-1) with `align_corners`; else
    (d + 0.5)/scale - 0.5 clamped at 0 with `half_pixel_centers` (its default is
    `not align_corners`; this is TF's half-pixel resize and PyTorch's align_corners=False);
    else d/scale. Linear interpolation between the two nearest rows/columns, the upper one
    clamped to the last.
    """
    x = _f32(x)
    align_corners = bool(align_corners)
    half_pixel = (not align_corners) if half_pixel_centers is None else bool(half_pixel_centers)

    def weights(n_in, scale):
        n_out = int(math.floor(n_in * float(scale)))
        d = np.arange(n_out, dtype=np.float64)
        if align_corners:
            src = d * (n_in - 1) / max(n_out - 1, 1)
        elif half_pixel:
            src = np.maximum((d + 0.5) / float(scale) - 0.5, 0.0)
        else:
            src = d / float(scale)
        lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = (src - lo).astype(np.float32)
        m = np.zeros((n_out, n_in), np.float32)
        np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
        np.add.at(m, (np.arange(n_out), hi), frac)
        return m

    rows, cols = weights(x.shape[-2], scale_factor_height), weights(x.shape[-1], scale_factor_width)
    return np.einsum("oh,...hw,pw->...op", rows, x, cols).astype(np.float32)


_OPS = {
    "add": _binary(np.add), "sub": _binary(np.subtract), "mul": _binary(np.multiply),
    "real_div": _binary(np.divide), "maximum": _binary(np.maximum), "minimum": _binary(np.minimum),
    "pow": _binary(np.power),
    "relu": lambda x: np.maximum(_f32(x), 0.0), "relu6": lambda x: np.clip(_f32(x), 0.0, 6.0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-_f32(x))), "tanh": lambda x: np.tanh(_f32(x)),
    "exp": lambda x: np.exp(_f32(x)), "log": lambda x, epsilon=1e-45: np.log(_f32(x) + float(epsilon)),
    "sqrt": lambda x: np.sqrt(_f32(x)), "square": lambda x: np.square(_f32(x)), "abs": lambda x: np.abs(_f32(x)),
    "rsqrt": lambda x, epsilon=1e-12: 1.0 / np.sqrt(_f32(x) + float(epsilon)),
    "inverse": lambda x, epsilon=1e-4: 1.0 / (_f32(x) + float(epsilon)),
    "erf": _erf, "gelu": _gelu, "softmax": _softmax, "clip": _clip, "identity": lambda x: x,
    "layer_norm": _layer_norm, "batch_norm": _batch_norm,
    "reduce_mean": _reduce(np.mean), "reduce_sum": _reduce(np.sum), "reduce_max": _reduce(np.max),
    "reduce_min": _reduce(np.min),
    "conv": _conv, "avg_pool": _pool("avg"), "max_pool": _pool("max"),
    "matmul": _matmul, "linear": _linear,
    "reshape": _reshape, "transpose": lambda x, perm: np.transpose(x, [int(p) for p in perm]),
    "squeeze": _squeeze, "expand_dims": _expand_dims, "slice_by_index": _slice_by_index,
    "slice_by_size": _slice_by_size, "pad": _pad, "concat": _concat, "split": _split, "gather": _gather,
    "constexpr_affine_dequantize": _affine_dequantize, "cast": _cast, "classify": _classify,
    "upsample_bilinear": _upsample_bilinear,
}
