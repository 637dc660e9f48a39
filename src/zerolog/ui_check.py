"""``make ui-check``: what a new user sees in the MLflow UI, checked over HTTP against a real ``mlflow ui``.

Starts ``mlflow ui`` over the project's store on a free port, reads back through the UI's own REST API that the
experiment is a model-training one and that its runs carry the columns the saved view shows (``f1``, ``roc_auc``) and
their datasets, then, where a headless Chromium is on PATH (Debian package ``chromium``; nothing is installed),
saves a screenshot of the page ``make ui`` prints under ``reports/mlflow-ui.png``. The server is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

from zerolog.config_loader import load_params
from zerolog.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, Tracker

SCREENSHOT = Path("reports") / "mlflow-ui.png"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def free_port() -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(tracking_uri: str, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """``mlflow ui`` over ``tracking_uri`` in its own process group (stopped with ``stop_server``), output to
    ``log``."""
    command = [str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", tracking_uri,
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_until_healthy(server: subprocess.Popen[bytes], url: str, timeout: float = 120) -> None:
    """Return once ``url``/health answers; RuntimeError when the server exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow ui exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow ui at {url} not healthy after {timeout:.0f} s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """Stop the server and the workers it started (its process group), nothing else."""
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


def api(url: str, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One call of the REST API the UI itself uses (``ajax-api/2.0/mlflow``): GET, or POST with ``body``."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(f"{url}/ajax-api/2.0/mlflow/{endpoint}", data=data,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def what_the_ui_shows(url: str, experiment_id: str) -> list[str]:
    """The checks' findings, one line each: the experiment's type, and how many runs show f1, ROC-AUC, a dataset."""
    experiment = api(url, f"experiments/get?experiment_id={experiment_id}")["experiment"]
    kind = {tag["key"]: tag["value"] for tag in experiment.get("tags", [])}.get(EXPERIMENT_KIND_TAG)
    if kind != EXPERIMENT_KIND:
        raise RuntimeError(f"experiment {experiment_id}: {EXPERIMENT_KIND_TAG} is {kind!r}, not {EXPERIMENT_KIND}")
    runs = api(url, "runs/search", {"experiment_ids": [experiment_id], "max_results": 1000}).get("runs", [])
    metrics = [{metric["key"] for metric in run["data"].get("metrics", [])} for run in runs]
    with_data = sum(bool(run.get("inputs", {}).get("dataset_inputs")) for run in runs)
    return [f"experiment {experiment_id}: {EXPERIMENT_KIND_TAG} = {kind}",
            f"{len(runs)} runs: {sum('f1' in names for names in metrics)} with f1, "
            f"{sum('roc_auc' in names for names in metrics)} with roc_auc, {with_data} with datasets"]  # fmt: skip


def screenshot(page: str, output: Path) -> str:
    """Save ``page`` as seen by headless Chromium (when one is on PATH) to ``output``; says what it did."""
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    if browser is None:
        return f"no {' / '.join(BROWSERS)} on PATH: screenshot skipped"
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1440,900", "--virtual-time-budget=20000", f"--screenshot={output.resolve()}", page],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    return f"screenshot: {output}"


def main(argv: list[str] | None = None) -> None:
    """Start ``mlflow ui``, check what it shows, screenshot the landing page, stop it (its log printed on failure)."""
    parser = argparse.ArgumentParser(description="check the MLflow UI a new user opens")
    parser.add_argument("--output", type=Path, default=SCREENSHOT, help="where the screenshot goes")
    arguments = parser.parse_args(argv)
    tracker = Tracker(load_params().mlflow)
    port = free_port()
    url, experiment_id = f"http://127.0.0.1:{port}", tracker.experiment_id()
    with tempfile.TemporaryFile() as log:
        server = start_server(tracker.tracking_uri, port, log)
        try:
            wait_until_healthy(server, url)
            page = tracker.experiment_url(url)
            for line in [*what_the_ui_shows(url, experiment_id), screenshot(page, arguments.output)]:
                print(line, flush=True)
        except (OSError, RuntimeError, subprocess.SubprocessError):
            log.seek(0)
            print(log.read().decode("utf-8", "replace")[-4000:], file=sys.stderr)
            raise
        finally:
            stop_server(server)


if __name__ == "__main__":
    main()
