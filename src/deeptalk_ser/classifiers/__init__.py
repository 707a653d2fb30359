"""Emotion classifiers on utterance embeddings: the flat RBF SVM and the Sad-First head."""

from .backend import select_backend
from .hierarchical import SadFirstClassifier
from .svm import SVMClassifier

__all__ = ["SVMClassifier", "SadFirstClassifier", "select_backend"]
