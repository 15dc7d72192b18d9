"""fastfeed: a market-data recorder that never loses the data it was sent."""

__version__ = "0.1.0"
__all__ = ["__version__"]
