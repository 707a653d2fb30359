"""Emotion classifiers on utterance embeddings: the flat RBF SVM, the Sad-First head and the standard heads."""

from deeptalk_ser.evaluation.classifiers.backend import select_backend
from deeptalk_ser.evaluation.classifiers.hierarchical import SadFirstClassifier, sad_first
from deeptalk_ser.evaluation.classifiers.standard import KNNClassifier, LinearSVMClassifier, LogRegClassifier, MLPHead
from deeptalk_ser.evaluation.classifiers.svm import SVMClassifier

__all__ = ["KNNClassifier", "LinearSVMClassifier", "LogRegClassifier", "MLPHead", "SVMClassifier", "SadFirstClassifier", "sad_first", "select_backend"]
