"""The built-in trainer: SSL pretraining, the classifier on a fraction of labels, optional DP."""

from govssl.train._trainer import TrainResult, fit, label_subset

__all__ = ["TrainResult", "fit", "label_subset"]
