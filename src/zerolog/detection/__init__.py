"""zerolog.detection: a trained detector on new logs (``zerolog detect``), its persisted form, registry and serving.

Layer: after evaluation (it reads the evaluation's thresholds and the training's scorer); ``fit`` and ``bundle`` are
what the baselines stage calls to persist the recommended detector. Nothing runs at import.
"""
