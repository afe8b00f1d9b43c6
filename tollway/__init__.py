"""Tollway: an API gateway that meters every call for billing."""

__version__ = "0.1.0"
