"""Atelier: an open visual generative foundation model stack."""

__version__ = "0.1.0"
