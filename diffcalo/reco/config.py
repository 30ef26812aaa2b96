"""Settings of a training run of the reconstruction networks (:class:`TrainConfig`).

Kept apart from the loop (:mod:`diffcalo.reco.train`) because a trained network
(:class:`~diffcalo.reco.net.TrainedNet`) records the settings it was trained with and restores them
from its checkpoint.
"""

from __future__ import annotations

import dataclasses

from diffcalo.checks import check_choice, check_int, check_number, fail
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
        # the same checks as the config loader (diffcalo.checks): a bool is not a number, numbers are finite
        check_choice("train.loss", self.loss, _losses.LOSSES)
        check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        check_choice("train.schedule", self.schedule, SCHEDULES)
        check_number("train.learning_rate", self.learning_rate, 0.0, strict=True)
        for name in ("batch_size", "epochs", "patience"):
            check_int(f"train.{name}", getattr(self, name), 1)
        for name in ("weight_decay", "conv_l2", "dense_l1", "dense_l2"):
            check_number(f"train.{name}", getattr(self, name), 0.0)
        if not isinstance(self.loss_options, dict):
            raise fail("train.loss_options", self.loss_options, "must be a table of options")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"train: unknown option(s) {unknown}; allowed: {', '.join(sorted(known))}")
        return cls(**d)
