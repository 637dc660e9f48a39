"""zerolog."""
