"""The built-in trainer: SSL pretraining, the classifier on a fraction of labels, optional DP."""

from govssl.train._trainer import TRAIN_THREADS, TrainResult, fit, label_subset

__all__ = ["TRAIN_THREADS", "TrainResult", "fit", "label_subset"]
