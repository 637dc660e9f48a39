"""zerolog.training."""
