"""Reconstruction of the clusters: a classical baseline and one network per task (energy, position, time).

Modules, each with one job:

- :mod:`~diffcalo.reco.classical`: the calibrated classical reconstruction (:class:`ClassicalReco`).
- :mod:`~diffcalo.reco.features`: network inputs (:class:`Inputs`) from clusters or images, no truth.
- :mod:`~diffcalo.reco.targets`: regression targets from the truth, for training and evaluation.
- :mod:`~diffcalo.reco.models`: the Flax NNX networks (:class:`ModelConfig`, :class:`Regressor`).
- :mod:`~diffcalo.reco.losses`: regression losses and weight penalties.
- :mod:`~diffcalo.reco.config`: training settings (:class:`TrainConfig`).
- :mod:`~diffcalo.reco.train`: the training loop (:func:`train`).
- :mod:`~diffcalo.reco.net`: a trained network (:class:`TrainedNet`): predict, apply, save, load.
- :mod:`~diffcalo.reco.pipeline`: the whole reconstruction of a design (:class:`Reconstruction`:
  fit, predict, save, load) and its evaluation against the classical baseline (:func:`evaluate`).

Typical use::

    from diffcalo.reco import Reconstruction, TrainConfig, evaluate
    reco = Reconstruction.fit(train_clusters, val_clusters, z_mm=layout.z_mm, train_config=TrainConfig())
    pred = reco.predict(clusters)          # needs no truth
    report = evaluate(reco, test_clusters)
"""

from diffcalo.reco import losses
from diffcalo.reco.classical import ClassicalEstimate, ClassicalReco
from diffcalo.reco.config import TrainConfig
from diffcalo.reco.features import TASKS, Inputs, cluster_inputs, energy_inputs, image_features
from diffcalo.reco.models import ModelConfig, Regressor
from diffcalo.reco.net import TrainedNet
from diffcalo.reco.pipeline import Reconstruction, evaluate
from diffcalo.reco.targets import image_inputs, prepare
from diffcalo.reco.train import TrainingError, train

__all__ = ["Reconstruction", "evaluate", "ClassicalReco", "ClassicalEstimate", "TASKS", "Inputs", "cluster_inputs",
           "energy_inputs", "image_features", "prepare", "image_inputs", "ModelConfig", "Regressor", "TrainConfig",
           "train", "TrainingError", "TrainedNet", "losses"]
