"""zerolog.features."""
