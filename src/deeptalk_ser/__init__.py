"""deeptalk-ser: speech emotion recognition from speaker-recognition embeddings."""

__version__ = "0.1.0"
