"""Training utilities for speaker encoders (batch sampling for metric learning)."""
