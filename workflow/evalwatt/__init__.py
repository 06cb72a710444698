"""evalwatt: GPU energy per answer of language models, next to their benchmark scores."""

__version__ = "0.1.0"
