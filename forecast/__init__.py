"""Probabilistic forecasting of gridded and sensor-network time series with generative models."""

__version__ = "0.1.0"
