"""Emotion classifiers on utterance embeddings: the flat RBF SVM and the Sad-First head."""

from deeptalk_ser.evaluation.classifiers.backend import select_backend
from deeptalk_ser.evaluation.classifiers.hierarchical import SadFirstClassifier, sad_first
from deeptalk_ser.evaluation.classifiers.svm import SVMClassifier

__all__ = ["SVMClassifier", "SadFirstClassifier", "sad_first", "select_backend"]
