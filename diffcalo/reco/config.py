"""Settings of a training run of the reconstruction networks (:class:`TrainConfig`).

Kept apart from the loop (:mod:`diffcalo.reco.train`) because a trained network
(:class:`~diffcalo.reco.net.TrainedNet`) records the settings it was trained with and restores them
from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import math

from diffcalo.reco import losses as _losses

__all__ = ["TrainConfig", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings (validated on construction; errors name the field, the value and what is allowed).

    Attributes:
        loss: name in :data:`diffcalo.reco.losses.LOSSES`; ``loss_options`` its options (the
            truncated-Gaussian range defaults to the training sample's energy range).
        optimizer: "adam" or "adamw" (``weight_decay`` for adamw).
        learning_rate, schedule: peak rate and its schedule over the run ("constant", "cosine",
            "warmup_cosine" (5 % warm-up), "exponential" (x 0.1 over the run)).
        batch_size, epochs, patience: mini-batch size, maximum epochs, early-stopping patience (epochs
            without a better validation loss).
        conv_l2, dense_l1, dense_l2: weight penalties on the convolution and dense kernels (per sample).
        augment: symmetry augmentation (flips, 90-degree turns on square maps).
        use_time: feed cell times to the energy and position networks too (always on for ``time``).
        seed: initialisation, shuffling and augmentation.
    """

    loss: str = "mse"
    loss_options: dict = dataclasses.field(default_factory=dict)
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    schedule: str = "cosine"
    weight_decay: float = 1e-4
    batch_size: int = 256
    epochs: int = 40
    patience: int = 6
    conv_l2: float = 0.0
    dense_l1: float = 0.0
    dense_l2: float = 0.0
    augment: bool = True
    use_time: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.loss not in _losses.LOSSES:
            raise ValueError(f"train.loss = {self.loss!r}; allowed: {', '.join(_losses.LOSSES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"train.optimizer = {self.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule = {self.schedule!r}; allowed: {', '.join(SCHEDULES)}")
        for name in ("learning_rate",):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"train.{name} = {v!r}; must be a positive number")
        for name in ("batch_size", "epochs"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"train.{name} = {v!r}; must be a positive integer")
        if not (isinstance(self.patience, int) and self.patience >= 1):
            raise ValueError(f"train.patience = {self.patience!r}; must be a positive integer")
        for name in ("weight_decay", "conv_l2", "dense_l1", "dense_l2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"train.{name} = {v!r}; must be a number >= 0")
        if not isinstance(self.loss_options, dict):
            raise ValueError(f"train.loss_options = {self.loss_options!r}; must be a table of options")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"train: unknown option(s) {unknown}; allowed: {', '.join(sorted(known))}")
        return cls(**d)
