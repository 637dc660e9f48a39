"""zerolog.data."""
