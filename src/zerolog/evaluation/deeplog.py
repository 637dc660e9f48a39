"""DeepLog's next-event model (Du, Li, Zheng, Srikumar; CCS 2017) trained on the target's UNLABELED train sessions.

An LSTM reads the last ``window`` events (template indices) and predicts the next one; an event outside the model's
``top_g`` most likely is a miss. DeepLog's decision: a session with any miss is anomalous. Here the model is fit on
the target's train sessions as they come, anomalies included (no label says which), which is the zero-label
setting; DeepLog itself trains on normal sessions only.

Cost (the research's port: about 200 s per system and seed at 5 epochs over every train window): the
(history, next event) pairs of a log repeat heavily, so training and scoring run on the DISTINCT pairs with their
multiplicities as loss weights: the same objective (the mean loss over every window) on 15-35x fewer windows (HDFS
58,684 -> 3,948; BGL 60,000 -> 1,713; DevStack 12,686 -> 1,075). An epoch is one pass over the distinct pairs; the
number of epochs and the batch are params (``evaluate.detectors.deeplog``, chosen for cost: see params.yaml).

Arrays: ``index`` (sessions, max_len) int rows of the template table, 0 = padding (it doubles as the start token,
as the research's port did); ``lengths`` (sessions,) int; ``train_rows`` (train sessions,) int64.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from zerolog.config import DeepLogConfig
from zerolog.errors import DataError
from zerolog.evaluation.detectors import Detection


class NextEventModel(nn.Module):
    """Embedding -> LSTM -> linear: logits of the next template given the last ``window`` ones."""

    def __init__(self, templates: int, hidden_size: int, layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(templates, hidden_size)
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers=layers, batch_first=True)
        self.output = nn.Linear(hidden_size, templates)

    def forward(self, histories: torch.Tensor) -> torch.Tensor:  # (batch, window) -> (batch, templates)
        states, _ = self.lstm(self.embedding(histories))
        return self.output(states[:, -1])


def next_event_windows(
    index: np.ndarray, lengths: np.ndarray, rows: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """(windows, owners): every event of the chosen sessions with the ``window`` events before it (left-padded with
    0), as rows [history..., event] of shape (events, window + 1), and the position in ``rows`` of its session."""
    rows = np.asarray(rows, dtype=np.int64)
    events = np.asarray(index, dtype=np.int64)[rows]  # (sessions, max_len)
    padded = np.concatenate([np.zeros((len(rows), window), dtype=np.int64), events], axis=1)
    windows = sliding_window_view(padded, window + 1, axis=1)  # (sessions, max_len, window + 1)
    inside = np.arange(events.shape[1])[None, :] < np.asarray(lengths)[rows][:, None]  # (sessions, max_len)
    owners = np.broadcast_to(np.arange(len(rows))[:, None], inside.shape)[inside]
    return windows[inside], owners


def _distinct(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct windows, inverse index of every window, multiplicity of each distinct one)."""
    distinct, inverse, multiplicity = np.unique(windows, axis=0, return_inverse=True, return_counts=True)
    return distinct, inverse.reshape(-1), multiplicity


def fit_next_event_model(distinct: np.ndarray, multiplicity: np.ndarray, templates: int, settings: DeepLogConfig,
                         seed: int) -> NextEventModel:  # fmt: skip
    """Adam on the multiplicity-weighted cross-entropy of the distinct (history, next event) pairs."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = NextEventModel(templates, settings.hidden_size, settings.layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    histories = torch.from_numpy(distinct[:, :-1])  # (distinct, window)
    targets = torch.from_numpy(distinct[:, -1])  # (distinct,)
    weights = torch.from_numpy(multiplicity.astype(np.float32))  # (distinct,)
    for _ in range(settings.epochs):
        order = torch.randperm(len(targets), generator=generator)
        for start in range(0, len(order), settings.batch_size):
            chosen = order[start : start + settings.batch_size]
            losses = nn.functional.cross_entropy(model(histories[chosen]), targets[chosen], reduction="none")
            optimizer.zero_grad()
            ((weights[chosen] * losses).sum() / weights[chosen].sum()).backward()
            optimizer.step()
    return model


#: Log-probabilities held at once when scoring: (windows in a batch) x (templates) <= this (64 MiB of float32). Why:
#: a system whose templates explode (32k templates on an OpenStack fault-injection set) made the whole
#: (distinct windows, templates) matrix 21.7 GB and the kernel killed the stage; per batch, memory does not grow
#: with the number of windows, and a batch is at least one window.
SCORE_FLOATS = 1 << 24
#: Windows scored at once at most (a model's float32 output can depend on its batch: kept as it always was).
SCORE_WINDOWS = 4096


def _rank_and_surprisal(model: NextEventModel, distinct: np.ndarray, templates: int) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct window: the rank of its next event among the model's predictions (0 = most likely) and its
    surprisal -log p(event), in batches of ``SCORE_WINDOWS`` windows, fewer where the templates are many
    (``SCORE_FLOATS``)."""
    batch = max(1, min(SCORE_WINDOWS, SCORE_FLOATS // max(templates, 1)))
    rank = np.empty(len(distinct), dtype=np.int64)
    surprisal = np.empty(len(distinct), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(distinct), batch):
            chunk = distinct[start : start + batch]
            log_probabilities = torch.log_softmax(model(torch.from_numpy(chunk[:, :-1])), dim=1)  # (batch, templates)
            event = torch.from_numpy(chunk[:, -1])
            event_log_probability = log_probabilities.gather(1, event[:, None])  # (batch, 1)
            rank[start : start + batch] = (log_probabilities > event_log_probability).sum(dim=1).numpy()
            surprisal[start : start + batch] = -event_log_probability[:, 0].double().numpy()
    return rank, surprisal


def deeplog(index: np.ndarray, lengths: np.ndarray, train_rows: np.ndarray, templates: int,
            settings: DeepLogConfig, seed: int) -> Detection:  # fmt: skip
    """DeepLog fit on the train rows; score = misses + s / (1 + s), s = the session's largest surprisal (a
    tie-break in [0, 1) among sessions with as many misses), so "any miss" is the cut 1.

    ``templates``: rows of the template table, padding included (vectors.npy's first dimension). Runs on
    ``settings.threads`` torch threads and restores the process's thread count after.
    """
    if len(train_rows) == 0:
        raise DataError("deeplog: the target has no train session to fit the next-event model on")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        train_windows, _ = next_event_windows(index, lengths, train_rows, settings.window)
        distinct, _, multiplicity = _distinct(train_windows)
        model = fit_next_event_model(distinct, multiplicity, templates, settings, seed)
        sessions = np.asarray(index).shape[0]
        windows, owners = next_event_windows(index, lengths, np.arange(sessions), settings.window)
        distinct, inverse, _ = _distinct(windows)
        rank, surprisal = _rank_and_surprisal(model, distinct, templates)
    finally:
        torch.set_num_threads(previous_threads)
    misses = np.bincount(owners, weights=(rank[inverse] >= settings.top_g).astype(np.float64), minlength=sessions)
    largest = np.zeros(sessions)
    np.maximum.at(largest, owners, surprisal[inverse])
    scores = misses + largest / (1.0 + largest)  # (sessions,)
    return Detection(scores, "unbounded", 1.0, f"any event outside the top {settings.top_g} predictions")
