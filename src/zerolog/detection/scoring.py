"""Scoring sessions of new logs: the persisted PCA detector and the transfer methods' GRU, with what weighed most.

A batch of sessions arrives as template codes (``SessionBatch``); ``texts[code]`` is each code's final template text
(codes are canonical: one per distinct text). Each session counts its FIRST ``max_len`` events, as the tensors stage
cuts them, so a session seen by the pipeline scores the same.

Which templates weighed most (``top_templates``):
- PCA SPE: the templates with the largest squared residual r_j^2 (SPE = sum_j r_j^2, zerolog.features.pca);
- GRU (transfer methods): the templates with the largest attention mass, sum of the attention weights alpha_t of
  their positions (the pooling of method.md §4; attention says where the encoder looked, not a causal effect).

``new_templates``: distinct templates of the whole session that are not in the detector's template table (mined new,
or known to the parser but never in a session the detector was fit on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from zerolog.detection.bundle import DetectorBundle


@dataclass(frozen=True)
class SessionBatch:
    """Sessions as flattened canonical template codes: session ``i`` is ``codes[offsets[i]:offsets[i + 1]]``."""

    ids: list[str]
    codes: np.ndarray  # (events,) int64
    offsets: np.ndarray  # (sessions + 1,) int64

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def head(self, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The first ``max_len`` events of each session: (session row per kept event, position in its session,
        codes), each (kept events,)."""
        lengths = self.lengths
        rows = np.repeat(np.arange(self.size), lengths)  # (events,)
        positions = np.arange(len(self.codes)) - np.repeat(self.offsets[:-1], lengths)
        kept = positions < max_len
        return rows[kept], positions[kept], self.codes[kept]


@dataclass(frozen=True)
class BatchScores:
    scores: np.ndarray  # (sessions,) float64, higher = more anomalous
    top_templates: list[list[str]]  # per session, most weight first
    new_templates: np.ndarray  # (sessions,) int64


class Scorer(Protocol):
    """What a detector does with sessions of new lines (``prepare`` once the template texts are final)."""

    max_len: int

    def prepare(self, texts: list[str]) -> None: ...

    def score(self, batch: SessionBatch) -> BatchScores: ...


def _top(weights: np.ndarray, labels: list[str], count: int) -> list[list[str]]:
    """Per row of ``weights`` (rows, columns): the labels of its ``count`` largest positive entries, largest first."""
    count = min(count, weights.shape[1])
    if count == 0:
        return [[] for _ in range(weights.shape[0])]
    best = np.argpartition(-weights, count - 1, axis=1)[:, :count]  # (rows, count) unordered
    order = np.argsort(-np.take_along_axis(weights, best, axis=1), axis=1, kind="stable")
    best = np.take_along_axis(best, order, axis=1)
    return [[labels[column] for column in row if weights[index, column] > 0] for index, row in enumerate(best.tolist())]


def _new_per_session(batch: SessionBatch, known: np.ndarray) -> np.ndarray:
    """(sessions,) distinct codes of each whole session for which ``known[code]`` is False."""
    rows = np.repeat(np.arange(batch.size), batch.lengths)
    unknown = ~known[batch.codes]
    pairs = np.unique(rows[unknown] * (int(batch.codes.max(initial=0)) + 1) + batch.codes[unknown])
    return np.bincount(pairs // (int(batch.codes.max(initial=0)) + 1), minlength=batch.size).astype(np.int64)


class PcaScorer:
    """The persisted detector (``DetectorBundle``): the selected recipe's combined score of the session's counts
    (zerolog.detection.recipe), or the PCA SPE of a bundle without a recipe; the templates shown are those with the
    largest squared PCA residual either way."""

    def __init__(self, bundle: DetectorBundle, top: int) -> None:
        self.bundle, self.top, self.max_len = bundle, top, bundle.context.max_len
        self._column_of_text = {text: column for column, text in enumerate(bundle.templates, start=1)}
        self._column = np.zeros(0, dtype=np.int64)
        self._texts: list[str] = []

    def prepare(self, texts: list[str]) -> None:
        self._texts = texts
        self._column = np.array([self._column_of_text.get(text, -1) for text in texts], dtype=np.int64)

    def score(self, batch: SessionBatch) -> BatchScores:
        rows, _, codes = batch.head(self.max_len)
        columns = self._column[codes]
        width = self.bundle.subspace.columns
        seen = columns >= 0
        counts = np.bincount(rows[seen] * width + columns[seen], minlength=batch.size * width)
        counts = counts.reshape(batch.size, width)  # (sessions, columns)
        extra_codes, extra_index = np.unique(codes[~seen], return_inverse=True)  # templates without a column
        extra = np.bincount(rows[~seen] * len(extra_codes) + extra_index, minlength=batch.size * len(extra_codes))
        extra = extra.reshape(batch.size, len(extra_codes))  # (sessions, templates without a column)
        residual = self.bundle.subspace.residuals(counts, extra)
        contributions = residual * residual  # (sessions, columns + extra)
        labels = ["", *self.bundle.templates, *[self._texts[code] for code in extra_codes.tolist()]]
        spe = contributions.sum(axis=1)
        recipe = self.bundle.recipe
        scores = spe if recipe is None else recipe.score(counts.astype(np.float64), extra, spe)
        return BatchScores(scores, _top(contributions, labels, self.top), _new_per_session(batch, self._column >= 0))


@dataclass(frozen=True)
class GruParts:
    """What a transfer method's scorer needs: the network's pieces as callables, so this module needs no torch.

    ``vectors_of`` embeds template texts the target's vocabulary lacks (n,) -> (n, dim) float32;
    ``probability_and_attention`` maps (index (sessions, max_len) int64 rows of the vector table, lengths
    (sessions,), table (rows, dim) float32) to (P(anomaly) (sessions,), attention (sessions, max_len))."""

    vocabulary: list[str]  # the target's tensors templates: vector row i + 1
    vectors: np.ndarray  # (templates + 1, dim) float32, row 0 padding
    vectors_of: Callable[[list[str]], np.ndarray]
    probability_and_attention: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    max_len: int


class GruScorer:
    """A transfer method's checkpoint: P(anomaly) of the session's template-vector sequence."""

    def __init__(self, parts: GruParts, top: int) -> None:
        self.parts, self.top, self.max_len = parts, top, parts.max_len
        self._row_of_text = {text: row for row, text in enumerate(parts.vocabulary, start=1)}
        self._row = np.zeros(0, dtype=np.int64)
        self._table = parts.vectors
        self._texts: list[str] = []

    def prepare(self, texts: list[str]) -> None:
        """Rows of the vector table for every code; texts outside the vocabulary are embedded and appended."""
        self._texts = texts
        rows = np.array([self._row_of_text.get(text, -1) for text in texts], dtype=np.int64)
        missing = np.flatnonzero(rows < 0)
        if missing.size:
            fresh = self.parts.vectors_of([texts[code] for code in missing.tolist()])  # (missing, dim)
            rows[missing] = np.arange(len(self.parts.vectors), len(self.parts.vectors) + missing.size)
            self._table = np.concatenate([self.parts.vectors, fresh.astype(np.float32)])
        self._row = rows

    def score(self, batch: SessionBatch) -> BatchScores:
        rows, positions, codes = batch.head(self.max_len)
        lengths = np.minimum(batch.lengths, self.max_len)
        index = np.zeros((batch.size, self.max_len), dtype=np.int64)  # (sessions, max_len), 0 padding
        index[rows, positions] = self._row[codes]
        probability, attention = self.parts.probability_and_attention(index, lengths, self._table)
        distinct, inverse = np.unique(codes, return_inverse=True)
        mass = np.zeros((batch.size, len(distinct)))  # (sessions, distinct templates) attention per template
        np.add.at(mass, (rows, inverse), attention[rows, positions])
        labels = [self._texts[code] for code in distinct.tolist()]
        known = np.zeros(len(self._texts), dtype=bool)
        known[[code for code, text in enumerate(self._texts) if text in self._row_of_text]] = True
        return BatchScores(probability.astype(np.float64), _top(mass, labels, self.top), _new_per_session(batch, known))


__all__ = ["BatchScores", "GruParts", "GruScorer", "PcaScorer", "Scorer", "SessionBatch"]
