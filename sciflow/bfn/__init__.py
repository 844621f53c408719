"""Bayesian flow networks: Gaussian, discrete and periodic (von Mises) flows as components."""
