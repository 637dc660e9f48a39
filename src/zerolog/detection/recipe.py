"""A selected recipe in persisted form: its member detectors' fitted state, their train scores, its cut.

The stage selection chooses a recipe of the detectors in ``selection.members`` (evaluation/selection.py); this module
fits those members on a system's unlabeled train count vectors into arrays the bundle stores without pickle, and
scores new count vectors with them, so ``zerolog detect`` applies the recipe the evaluate stage measured. The members
it can hold (``SERVABLE``) are the ones whose state is a few arrays:

| member | state | score of a session (counts ``c``, ``present = c > 0``) |
|---|---|---|
| ``pca`` | the PCA subspace (zerolog.features.pca) | SPE off the train subspace |
| ``template_rarity`` | train sessions holding each template, N | max over present templates of -log((n_t+1)/(N+2)) |
| ``template_set_rarity`` | train sessions per distinct template set | -log((n_S+1)/(N+1)) |
| ``loglead_rarity`` | LogLead's ``RarityModel.score_vector`` per column | LogLead's ``predict`` (train vocabulary) |

A template no train session held (new in the logs) is present for the two rarity scores (its n is 0) and dropped by
LogLead's (its vocabulary is the train templates), as the baselines stage scores it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from zerolog.errors import DataError
from zerolog.evaluation.selection import Recipe, standing

SERVABLE = ("pca", "template_rarity", "template_set_rarity", "loglead_rarity")


def set_key(columns: np.ndarray) -> str:
    """A template set as text: its sorted count columns joined by spaces (new templates: their text's code, never a
    train set's)."""
    return " ".join(str(int(column)) for column in np.sort(columns))


@dataclass(frozen=True)
class RecipeState:
    """What scoring a recipe needs beside the PCA subspace (which the bundle always holds)."""

    recipe: Recipe
    threshold: float
    train_sessions: int  # N
    holding: np.ndarray  # (V + 1,) train sessions holding each column
    set_counts: dict[str, int]  # template set key -> train sessions with exactly that set
    rarity_weights: np.ndarray  # (V + 1,) LogLead's weight of each column, 0 outside its vocabulary
    vocabulary: np.ndarray  # (V + 1,) bool: columns of LogLead's vocabulary (templates of the train sessions)
    train_scores: np.ndarray  # (members, N) each member's scores of the train sessions

    @classmethod
    def fit(cls, recipe: Recipe, threshold: float, counts: np.ndarray, train_rows: np.ndarray,
            loglead: tuple[float, float]) -> RecipeState:  # fmt: skip
        """Fit on the train rows' counts (sessions, V + 1); ``loglead``: (threshold, common_threshold)."""
        unknown = [member for member in recipe.members if member not in SERVABLE]
        if unknown:
            raise DataError(f"recipe {recipe.key}: {', '.join(unknown)} cannot be persisted (servable: {SERVABLE})")
        from loglead.RarityModel import RarityModel

        train = np.asarray(counts, dtype=np.float64)[train_rows]
        present = train > 0
        sets: dict[str, int] = {}
        for row in present:
            key = set_key(np.flatnonzero(row))
            sets[key] = sets.get(key, 0) + 1
        vocabulary = train.sum(axis=0) > 0
        model = RarityModel(*loglead)
        model.fit(sparse.csr_matrix(train[:, vocabulary]))
        weights = np.zeros(train.shape[1])
        weights[vocabulary] = model.score_vector
        return cls(recipe, threshold, int(train.shape[0]), present.sum(axis=0).astype(np.int64), sets, weights,
                   vocabulary, np.zeros((0, 0)))  # fmt: skip

    def member_scores(self, member: str, counts: np.ndarray, new: np.ndarray, spe: np.ndarray) -> np.ndarray:
        """(sessions,) one member's scores; ``counts`` (sessions, V + 1) of known columns, ``new`` (sessions,
        new templates) counts of templates outside the table, ``spe`` the PCA's SPE of the same sessions."""
        present, fresh = counts > 0, new > 0
        if member == "pca":
            return spe
        if member == "template_rarity":
            rarity = -np.log((self.holding + 1.0) / (self.train_sessions + 2.0))
            scores = np.where(present, rarity, -np.inf).max(axis=1)
            scores = np.where(fresh.any(axis=1), -np.log(1.0 / (self.train_sessions + 2.0)), scores)
            scores[~(present.any(axis=1) | fresh.any(axis=1))] = 0.0
            return scores
        if member == "template_set_rarity":
            tally = np.array([0 if fresh[row].any() else self.set_counts.get(set_key(np.flatnonzero(present[row])), 0)
                              for row in range(counts.shape[0])], dtype=np.float64)  # fmt: skip
            return -np.log((tally + 1.0) / (self.train_sessions + 1.0))
        if member == "loglead_rarity":
            from loglead.RarityModel import RarityModel

            model = RarityModel()
            model.score_vector = self.rarity_weights[self.vocabulary]
            model.predict(sparse.csr_matrix(counts[:, self.vocabulary]))
            return np.asarray(model.scores, dtype=np.float64)
        raise DataError(f"recipe member {member!r} cannot be scored (servable: {SERVABLE})")

    def score(self, counts: np.ndarray, new: np.ndarray, spe: np.ndarray) -> np.ndarray:
        """(sessions,) the recipe's combined score (zerolog.evaluation.selection.combined_scores, same steps)."""
        members = enumerate(self.recipe.members)
        columns = [standing(self.recipe.standing, self.train_scores[index],
                            self.member_scores(member, counts, new, spe)) for index, member in members]  # fmt: skip
        stacked = np.vstack(columns)  # (members, sessions)
        return stacked.max(axis=0) if self.recipe.combination == "max" else stacked.mean(axis=0)
