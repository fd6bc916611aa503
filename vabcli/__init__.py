"""vab: dub videos with audio generated from their pictures."""

__version__ = "0.1.0"
