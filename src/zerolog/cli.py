"""Shared entry point for the pipeline/ scripts: load params, run one stage function, report errors in one line."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

from zerolog.config import load_params
from zerolog.errors import ZerologError


def run_stage(stage: Callable[..., Any], arguments: list[str], usage: str) -> None:
    """Run ``stage(params, *arguments)``; a ZerologError becomes ``error: <message>`` and exit status 1."""
    expected = len(inspect.signature(stage).parameters) - 1  # the first parameter is params
    if len(arguments) != expected or (arguments and arguments[0] in ("-h", "--help")):
        sys.exit(f"usage: {usage}")
    try:
        stage(load_params(), *arguments)
    except ZerologError as error:
        sys.exit(f"error: {error}")
