"""MLflow models-from-code: a trained ZeroLog network as a pyfunc (no pickle, so MLflow prints no pickle warning).

MLflow runs this file to build the model (``mlflow.pyfunc.load_model``, ``mlflow models serve``); the one statement
at module level, ``set_served_model``, is how models-from-code names its model (MLflow's design, not logic of ours).
The artifact ``network`` is a weights-only file in the checkpoint layout (``{"weights": state dict, "config":
{"encoder": ..., "domain": ...}}``, read by zerolog.training.loop.load_checkpoint with ``weights_only=True``).
Logged by zerolog.tracking.Tracker.log_model for every trained method run; nothing in zerolog imports this file.

Input: one list of template vectors per session (sessions, events, dim), as nested lists (MLflow's type-hint
signature; sessions may differ in length and are zero-padded, the tensors' convention); output: class logits
(sessions, 2), column 1 anomalous (the network's ``forward``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zerolog.tracking import PythonModel, set_served_model


class ServedNetwork(PythonModel):
    """Template vectors (sessions, seq_len, dim) -> logits (sessions, 2)."""

    def load_context(self, context: Any) -> None:
        from zerolog.training.loop import load_checkpoint

        self.network, _ = load_checkpoint(Path(context.artifacts["network"]))

    # The type hints are the model's signature (MLflow reads them): sessions of template vectors in, logits out.
    # MLflow takes list[...] hints only, hence lists; sessions may differ in length (zero-padded here).
    def predict(self, model_input: list[list[list[float]]], params: dict[str, Any] | None = None) -> list[list[float]]:  # type: ignore[override]
        import torch

        longest = max(len(session) for session in model_input)
        dimensions = len(model_input[0][0])
        vectors = np.zeros((len(model_input), longest, dimensions), dtype=np.float32)  # (sessions, seq_len, dim)
        for row, session in enumerate(model_input):
            vectors[row, : len(session)] = session
        with torch.no_grad():
            return self.network(torch.from_numpy(vectors)).tolist()  # (sessions, 2)


set_served_model(ServedNetwork())
