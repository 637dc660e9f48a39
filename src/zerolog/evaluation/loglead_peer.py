"""LogLead's own label-free detectors as target-only rows: the log-specific peer a practitioner would pick instead.

LogLead (Mäntylä, Wang, Nyyssölä; SANER 2024; PyPI ``loglead``) ships beside its scikit-learn wrappers two detectors
of its own that run on a session's events alone. Each is fit here on the target's TRAIN sessions with no label
(LogLead's ``AnomalyDetector.train_RarityModel`` defaults to ``filter_anos=True``, i.e. fits on the NORMAL train
sessions, which reads labels: that setting would be an oracle and is not reproduced):

- ``loglead_rarity`` (``loglead.RarityModel``): a template seen in training weighs ``(-ln p)**3``, p = its share of
  all train events, or 0 when p > ``common_threshold``; a session scores the count-weighted sum of its templates'
  weights over its number of distinct templates. Templates no train session holds drop out of the count vector
  (as LogLead's AnomalyDetector builds it from the train vocabulary). LogLead's decision: score > ``threshold``.
- ``loglead_ngram`` (``loglead.NextEventPredictionNgram``; Mäntylä, Varela, Hashemi, NEXTA 2022): an n-gram
  next-event model; each event gets p = count(n-gram) / count(the most frequent n-gram with the same n-1 prefix)
  (LogLead's ``scores_prop_norm_max``); a session scores 1 - mean p. LogLead gives it no decision rule.

Why not a pip dependency: loglead 2.0.0 requires ``regex>=2024.5.15`` and logparser3 pins ``regex==2022.3.2`` (one
resolve is impossible; every loglead release needs regex >= 2023.10.3), and a full install downgrades cachetools,
which breaks ``import mlflow`` (measured when LogLead was added). ``make install`` adds it with ``--no-deps``:
these two classes import only numpy. Where it is missing the baselines stage writes ``not_available`` with the
reason. Import from the submodules: in 2.0.0, ``from loglead import RarityModel`` can return the module.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from zerolog.evaluation.detectors import Detection

INSTALL_HINT = "pip install --no-deps loglead==2.0.0 (make install does it)"


def unavailable_reason() -> str | None:
    """None when LogLead's detectors import; else why not, in one line."""
    try:
        from loglead.next_event_prediction import NextEventPredictionNgram  # noqa: F401
        from loglead.RarityModel import RarityModel  # noqa: F401
    except ImportError as error:
        return f"loglead is not importable ({error}); {INSTALL_HINT}"
    return None


def loglead_rarity(counts: np.ndarray, train_rows: np.ndarray, threshold: float, common_threshold: float) -> Detection:
    """LogLead's RarityModel on the count vectors of the templates seen in train, fit on the train rows."""
    from loglead.RarityModel import RarityModel

    counts = np.asarray(counts, dtype=np.float64)
    vocabulary = np.flatnonzero(counts[train_rows].sum(axis=0) > 0)  # templates of the train sessions
    matrix = sparse.csr_matrix(counts[:, vocabulary])  # (sessions, train templates); LogLead wants a sparse matrix
    model = RarityModel(threshold=threshold, common_threshold=common_threshold)
    model.fit(matrix[train_rows])
    model.predict(matrix)  # sets model.scores (sessions,)
    # LogLead flags score > threshold; the pipeline's rules read score >= cut: the next float above is the same cut.
    cut = float(np.nextafter(threshold, np.inf))
    return Detection(np.asarray(model.scores, dtype=np.float64), "unbounded", cut, f"score > {threshold} (LogLead)")


def _event_lists(index: np.ndarray, lengths: np.ndarray, rows: np.ndarray) -> list[list[str]]:
    """Each chosen session's events as template-index strings (LogLead's n-gram model joins them with spaces)."""
    return [[str(event) for event in np.asarray(index[row, : lengths[row]])] for row in rows]


def loglead_ngram(index: np.ndarray, lengths: np.ndarray, train_rows: np.ndarray, ngram_length: int) -> Detection:
    """LogLead's n-gram next-event model fit on the train sessions; score 1 - mean normalised n-gram probability."""
    from loglead.next_event_prediction import NextEventPredictionNgram

    model = NextEventPredictionNgram(ngrams=ngram_length)
    model.create_ngram_model(_event_lists(index, lengths, np.asarray(train_rows)))
    everything = _event_lists(index, lengths, np.arange(np.asarray(index).shape[0]))
    *_, probabilities = model.predict_list(everything)  # per session: one p per event and one for end-of-session
    scores = np.array([1.0 - float(np.mean(values)) for values in probabilities], dtype=np.float64)
    return Detection(scores, "unit", None, "none (LogLead gives the n-gram model no decision rule)")
