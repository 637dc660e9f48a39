"""zerolog.evaluation."""
