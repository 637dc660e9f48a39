"""MLflow models-from-code: a registered detector as a pyfunc whose input is raw log lines.

MLflow runs this file to build the model (``mlflow.pyfunc.load_model``, ``mlflow models serve``); the one statement at
module level, ``set_served_model``, is how models-from-code names its model (MLflow's design, not logic of ours). The
artifacts are the bundle folder (``bundle``) and the ``detect`` settings (``settings``); the logic is in
zerolog.detection.serving. Logged by zerolog.detection.registry; nothing in zerolog imports this file.

The type hints of ``predict`` are the model's signature (MLflow reads them): input a list of raw log lines, output one
``SessionScore`` per session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from zerolog.tracking import PythonModel, set_served_model


class SessionScore(BaseModel):
    """One session of the request, as ``zerolog detect`` writes it."""

    session_id: str
    score: float
    flagged: bool | None = None  # None: the detector has no label-free cut
    events: int
    new_templates: int
    top_templates: list[str]
    first_file: str
    first_line: int


class ServedDetector(PythonModel):
    """Raw log lines (one log, in order) -> one ``SessionScore`` per session."""

    def load_context(self, context: Any) -> None:
        from zerolog.detection.serving import load_served

        artifacts = context.artifacts
        self.detector, self.options = load_served(Path(artifacts["bundle"]), Path(artifacts["settings"]))

    # MLflow's context-free predict (model_input, params): its type hints are the signature; mypy sees the older
    # predict(context, model_input, params) of the base class
    def predict(self, model_input: list[str], params: dict[str, Any] | None = None) -> list[SessionScore]:  # type: ignore[override]
        from zerolog.detection.serving import score_lines

        return [SessionScore(**row) for row in score_lines(self.detector, self.options, model_input)]


set_served_model(ServedDetector())
