"""Corpus loaders: each reads one corpus's exact on-disk layout into manifest utterances."""

from .base import CORPORA, CorpusLoader, get_corpus, register_corpus

__all__ = ["CORPORA", "CorpusLoader", "get_corpus", "register_corpus"]
