"""zerolog.detection: a trained detector on new logs (``zerolog detect``), its persisted form, registry and serving.

Layer: after evaluation (it reads the evaluation's thresholds and the training's scorer); ``bundle`` and ``recipe`` are
the persisted form the selection stage (zerolog.detection.loso) writes. Nothing runs at import.
"""
