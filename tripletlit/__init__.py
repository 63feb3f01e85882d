"""tripletlit: triplet-loss matrix factorisation for accurate and fair music recommendation."""

__version__ = "0.1.0"
