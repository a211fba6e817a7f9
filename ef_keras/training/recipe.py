"""The training recipe as data: the paper's ImageNet settings and a quick one for the embedded data.

`PAPER` is the official EfficientFormer ImageNet-1k recipe (facts file §4, current main
branch): AdamW (eps 1e-8, weight decay 0.025), lr 1e-3 x global batch / 1024, cosine with
5 linear warm-up epochs from 1e-5 to a floor of 1e-5, label smoothing 0.1, EMA 0.99996,
adaptive gradient clipping 0.01, RandAugment + Mixup/CutMix + RandomErasing, hard
distillation with alpha 0.5, 300 epochs at a global batch of 24 x 128 = 3072 (lr 3e-3).
Not reproduced: repeated augmentation (a sampler for many-GPU runs) and the 10 cooldown
epochs of the first code release.

`EMBEDDED` trains a small network on the in-memory data (`--data digits`: a minute on a laptop CPU): same
optimiser and schedule shape, light augmentation, no EMA (0.99996 would average over far
more steps than the run has).
"""

from __future__ import annotations

import dataclasses
import json

from ef_keras.checks import check_int, check_number
from ef_keras.errors import InputError


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one training run (see the module docstring for the defaults' source)."""

    epochs: int = 300
    batch_size: int = 3072            # global batch (all replicas)
    image_size: int = 224
    base_lr: float = 1e-3             # lr = base_lr * batch_size / lr_batch_denominator
    lr_batch_denominator: int = 1024
    warmup_epochs: float = 5.0
    warmup_lr: float = 1e-5
    min_lr: float = 1e-5
    weight_decay: float = 0.025
    adam_epsilon: float = 1e-8
    label_smoothing: float = 0.1
    ema_decay: float = 0.99996        # 0 disables EMA
    agc_clip: float = 0.01            # 0 disables adaptive gradient clipping
    drop_path_rate: float = 0.0       # the official script passes none (facts §4)
    distill_alpha: float = 0.5
    augment: str = "recipe"           # a preset of ef_keras.data.AUGMENT_PRESETS
    crop_pct: float | None = None     # eval centre crop; None: the presets' (timm's 0.95; official script 0.875)

    def __post_init__(self):
        for field, (low, high) in _INT_RANGES.items():
            check_int(_name(field), getattr(self, field), low, high)
        for field, (low, high, low_open, high_open) in _FLOAT_RANGES.items():
            if field == "crop_pct" and self.crop_pct is None:
                continue
            check_number(_name(field), getattr(self, field), low=low, high=high, low_open=low_open,
                         high_open=high_open)
        if not isinstance(self.augment, str):
            raise InputError(f"{_name('augment')} must be a preset name, got {self.augment!r}")

    @property
    def peak_lr(self) -> float:
        return self.base_lr * self.batch_size / self.lr_batch_denominator

    def replace(self, **changes) -> "Recipe":
        """A copy with some fields changed (None values are ignored, so CLI flags can pass through)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


#: Ranges each field must lie in: ints (low, high), floats (low, high, low_open, high_open); None = unbounded.
_INT_RANGES = {"epochs": (1, None), "batch_size": (1, None), "image_size": (32, None),
               "lr_batch_denominator": (1, None)}
_FLOAT_RANGES = {"base_lr": (0, None, True, False), "warmup_epochs": (0, None, False, False),
                 "warmup_lr": (0, None, False, False), "min_lr": (0, None, False, False),
                 "weight_decay": (0, None, False, False), "adam_epsilon": (0, None, True, False),
                 "label_smoothing": (0, 1, False, True), "ema_decay": (0, 1, False, True),
                 "agc_clip": (0, None, False, False), "drop_path_rate": (0, 1, False, True),
                 "distill_alpha": (0, 1, False, False), "crop_pct": (0, 1, True, False)}
#: The train CLI's flag for a field, where it differs from the field name.
_FLAGS = {"ema_decay": "ema", "agc_clip": "agc", "drop_path_rate": "drop-path"}


def _name(field: str) -> str:
    """"base_lr (--base-lr)": the field and the train CLI flag that sets it."""
    return f"{field} (--{_FLAGS.get(field, field).replace('_', '-')})"


PAPER = Recipe()
EMBEDDED = Recipe(epochs=15, batch_size=64, image_size=64, base_lr=2e-2, warmup_epochs=1.0, min_lr=1e-4,
                  weight_decay=0.025, ema_decay=0.0, augment="light")

RECIPES = {"paper": PAPER, "embedded": EMBEDDED}
