"""Target descriptions: what machine a payload is built for."""
from .description import Target, load, loads, save

__all__ = ["Target", "load", "loads", "save"]
