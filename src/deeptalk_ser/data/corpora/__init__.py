"""Corpus loaders: one module per corpus layout, each a :class:`CorpusLoader`."""

from deeptalk_ser.data.corpora.base import CorpusLoader

__all__ = ["CorpusLoader"]
