"""Elastic forward pass of the supernet: any child (widths, depths, 4D/3D) from one traced graph.

The supernet holds every weight at its largest width (Keras layers built by
`ef_keras.models.efficientformer.model.block_layer`, as the plain model's). A child network is given as tensors:

- `widths` (4,) int32: channels of each stage; every tensor is sliced from the front
  (conv kernels [:, :, :Cin, :Cout], Dense kernels [:Cin, :Cout], norm and layer-scale
  vectors [:C], the MLP hidden width mlp_ratio·C), the Once-for-All / BigNAS convention;
- `choices` (paths,) int32: per MetaPath 0 = MB4D, 1 = MB3D, 2 = identity (`CANDIDATES`).

Because the child is data, not graph structure, one `tf.function` trace serves every child
the search trains or scores; each MetaPath runs only its chosen candidate (`tf.switch_case`;
training on several replicas runs every candidate and selects, see `Supernet._chosen_path`).
The same arithmetic as `ef_keras.layers` is written here on sliced variables (Once-for-All's
"dynamic layers" do the same); `tests/test_elastic.py` checks every child against the plain
`ef_keras.EfficientFormer` built by `supernet.child_model` from the same weights.

BatchNorm: children never share statistics (removing a block or slicing channels changes
what every later BatchNorm sees), so the supernet's running statistics are not maintained
during training. Training normalises with batch statistics (synchronised across replicas);
`calibrate=True` also writes them into the leading entries of the running statistics, which
inference (`training=False`) then reads: the per-child recalibration of Once-for-All.
"""

from __future__ import annotations

import tensorflow as tf

from ef_keras.models.common_layers import BN_EPSILON, LN_EPSILON

#: Candidate index per MetaPath, in the order of the supernet's α columns ("4d", "3d", "id").
MB4D, MB3D, IDENTITY = 0, 1, 2
_SQRT_HALF = 0.7071067811865476


def gelu(x):
    return 0.5 * x * (1.0 + tf.math.erf(x * _SQRT_HALF))


def _v(variable):
    """The tf.Variable behind a Keras variable (for prefix reads and writes)."""
    return variable.value if hasattr(variable, "value") else variable


def conv(layer, x, cin, cout, stride=1):
    """A Conv2D layer's kernel[:, :, :cin, :cout] + bias[:cout]; stride 2 with PyTorch's padding=1."""
    kernel = _v(layer.kernel)[:, :, :cin, :cout]
    if stride == 2:
        x = tf.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        y = tf.nn.conv2d(x, kernel, 2, "VALID")
    else:
        y = tf.nn.conv2d(x, kernel, 1, "VALID")
    return y + _v(layer.bias)[:cout]


def dense(layer, x, cin, cout):
    kernel = _v(layer.kernel)[:cin, :cout]
    bias = _v(layer.bias)[:cout]
    return tf.tensordot(x, kernel, 1) + bias if x.shape.rank != 2 else tf.matmul(x, kernel) + bias


def batch_norm(layer, x, c, training, calibrate=False):
    """BatchNorm over the first c channels; see the module docstring for the three modes."""
    gamma, beta = _v(layer.gamma)[:c], _v(layer.beta)[:c]
    if not training:
        mean, var = _v(layer.moving_mean)[:c], _v(layer.moving_variance)[:c]
        return tf.nn.batch_normalization(x, mean, var, beta, gamma, BN_EPSILON)
    axes = list(range(x.shape.rank - 1))
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:  # SyncBN: moments of the global batch
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), x.dtype)
        sums = ctx.all_reduce("sum", [tf.reduce_sum(x, axes), tf.reduce_sum(tf.square(x), axes),
                                      count * tf.ones((1,), x.dtype)])
        mean = sums[0] / sums[2][0]
        var = tf.maximum(sums[1] / sums[2][0] - tf.square(mean), 0.0)
    else:
        mean, var = tf.nn.moments(x, axes)
    if calibrate:
        for variable, value in ((layer.moving_mean, mean), (layer.moving_variance, var)):
            full = _v(variable)
            full.assign(tf.concat([value, full[c:]], axis=0))
    return tf.nn.batch_normalization(x, mean, var, beta, gamma, BN_EPSILON)


def layer_norm(layer, x, c):
    mean, var = tf.nn.moments(x, [-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + LN_EPSILON) * _v(layer.gamma)[:c] + _v(layer.beta)[:c]


def scale(layer, x, c):
    return x * _v(layer.layer_scale)[:c]


def stem(layer, x, c, training, calibrate):
    """ef_keras.layers.Stem at width c (conv1 has c // 2 channels)."""
    half = c // 2
    x = tf.nn.relu(batch_norm(layer.norm1, conv(layer.conv1, x, 3, half, 2), half, training, calibrate))
    return tf.nn.relu(batch_norm(layer.norm2, conv(layer.conv2, x, half, c, 2), c, training, calibrate))


def downsample(layer, x, cin, cout, training, calibrate):
    return batch_norm(layer.norm, conv(layer.conv, x, cin, cout, 2), cout, training, calibrate)


def meta4d(layer, x, c, training, calibrate):
    """ef_keras.layers.Meta4D at width c (pool mixer, Conv-BN MLP of hidden mlp_ratio·c)."""
    pooled = tf.nn.avg_pool2d(x, layer.pool_size, 1, "SAME")  # excludes padding, like the reference
    x = x + scale(layer.ls1, pooled - x, c)
    hidden = layer.mlp_ratio * c
    h = gelu(batch_norm(layer.norm1, conv(layer.fc1, x, c, hidden), hidden, training, calibrate))
    h = batch_norm(layer.norm2, conv(layer.fc2, h, hidden, c), c, training, calibrate)
    return x + scale(layer.ls2, h, c)


def attention(layer, x, c):
    """ef_keras.layers.Attention on (B, N, c) tokens: input width c, heads and key_dim fixed."""
    n = layer.num_tokens
    qkv = tf.reshape(dense(layer.qkv, x, c, layer.num_heads * layer.head_dim), (-1, n, layer.num_heads, layer.head_dim))
    qkv = tf.transpose(qkv, (0, 2, 1, 3))
    q, k, v = (qkv[..., :layer.key_dim], qkv[..., layer.key_dim:2 * layer.key_dim], qkv[..., 2 * layer.key_dim:])
    bias = tf.gather(_v(layer.attention_biases), layer.bias_index, axis=1)
    logits = tf.matmul(q, k, transpose_b=True) * layer.scale + bias
    out = tf.matmul(tf.nn.softmax(logits, axis=-1), v)
    out = tf.reshape(tf.transpose(out, (0, 2, 1, 3)), (-1, n, layer.num_heads * layer.val_dim))
    return dense(layer.proj, out, layer.num_heads * layer.val_dim, c)


def meta3d_tokens(layer, x, c):
    """ef_keras.layers.Meta3D at width c on (B, N, c) tokens."""
    x = x + scale(layer.ls1, attention(layer.token_mixer, layer_norm(layer.norm1, x, c), c), c)
    hidden = layer.mlp_ratio * c
    h = dense(layer.fc2, gelu(dense(layer.fc1, layer_norm(layer.norm2, x, c), c, hidden)), hidden, c)
    return x + scale(layer.ls2, h, c)


def meta3d(layer, x, c):
    """A 3D MetaBlock on a 4D map: flatten to tokens, run, fold back (so every MetaPath composes)."""
    shape = tf.shape(x)
    y = meta3d_tokens(layer, tf.reshape(x, (shape[0], shape[1] * shape[2], c)), c)
    return tf.reshape(y, shape)


def head(norm, dense_layer, x, c, classes):
    """Final LayerNorm over the c channels of every token, mean over tokens, classifier."""
    shape = tf.shape(x)
    tokens = tf.reshape(x, (shape[0], shape[1] * shape[2], c))
    return dense(dense_layer, tf.reduce_mean(layer_norm(norm, tokens, c), axis=1), c, classes)
