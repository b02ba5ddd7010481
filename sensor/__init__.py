"""holdmon: wearable-sensor hold monitor for standing knee-lift exercises."""

__version__ = "0.1.0"
