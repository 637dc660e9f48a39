"""zerolog.model."""
