"""A transfer method's trained network (the train stage's checkpoint) as the callables ``GruScorer`` needs (torch).

The checkpoint is read with ``torch.load(weights_only=True)`` (zerolog.training.loop.load_checkpoint). Template texts
the target's vocabulary lacks get the vector the embed stage would give them: the stored one when the embed stage
embedded that text for another dataset, else ``embed_texts`` of its cleaned text, alone (bit-identical to the embed
stage for ``embed.method: sentence``; for ``hashing`` the TF-IDF weights come from these texts only, an approximation
the summary names).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from zerolog.config import EmbedConfig
from zerolog.detection.scoring import GruParts
from zerolog.features.embed import clean_template, embed_texts, read_template_vectors
from zerolog.model import ZeroLogModel, lookup_vectors
from zerolog.training.loop import load_checkpoint


def vector_lookup(vectors_file: Path, embed: EmbedConfig) -> Callable[[list[str]], np.ndarray]:
    """A function from template texts to (texts, dim) float32 vectors: the embed stage's stored vector of each text
    where it has one, else the text embedded now, alone."""

    def vectors_of(texts: list[str]) -> np.ndarray:
        stored = read_template_vectors(vectors_file) if vectors_file.is_file() else None
        row_of = {text: row for row, text in enumerate(stored.templates)} if stored is not None else {}
        result = []
        for text in texts:
            row = row_of.get(text)
            if row is not None:
                result.append(stored.vectors[row])  # type: ignore[union-attr]
            else:
                result.append(embed_texts([clean_template(text)], embed)[0])
        return np.stack(result).astype(np.float32) if result else np.zeros((0, 1), dtype=np.float32)

    return vectors_of


def network_scorer(model: ZeroLogModel, batch_size: int) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """``probability_and_attention`` of ``GruParts`` for ``model`` (CPU, eval mode, no gradients), in batches: the
    model's own forward (encoder states, attention pooling, classifier, softmax), keeping the attention weights."""

    @torch.no_grad()
    def probability_and_attention(index: np.ndarray, lengths: np.ndarray,
                                  table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        vectors_table = torch.from_numpy(np.ascontiguousarray(table, dtype=np.float32))  # (rows, dim)
        probabilities = np.empty(len(index), dtype=np.float64)
        attention = np.zeros(index.shape, dtype=np.float64)  # (sessions, max_len)
        for start in range(0, len(index), batch_size):
            chosen = slice(start, start + batch_size)
            vectors = lookup_vectors(vectors_table, torch.from_numpy(index[chosen]))  # (batch, max_len, dim)
            batch_lengths = torch.from_numpy(np.asarray(lengths[chosen], dtype=np.int64))
            states, mask = model.encoder.states(vectors, batch_lengths)
            weights = model.encoder.attention.weights(states, mask)  # (batch, max_len)
            logits = model.classifier(model.encoder.attention(states, mask))  # (batch, 2): ZeroLogModel.forward
            probabilities[chosen] = torch.softmax(logits, dim=-1)[:, 1].double().numpy()
            attention[chosen] = weights.double().numpy()
        return probabilities, attention

    return probability_and_attention


def gru_parts(checkpoint: Path, vocabulary: list[str], vectors: np.ndarray, max_len: int, vectors_file: Path,
              embed: EmbedConfig, batch_size: int) -> GruParts:  # fmt: skip
    """The scorer's parts for the checkpoint of a transfer method on its target's tensors (``vectors`` (V + 1,
    dim), row 0 padding; ``vocabulary`` the tensors' ``templates_list``)."""
    model, _ = load_checkpoint(checkpoint, "cpu")
    return GruParts(vocabulary, np.asarray(vectors, dtype=np.float32), vector_lookup(vectors_file, embed),
                    network_scorer(model.eval(), batch_size), max_len)  # fmt: skip


__all__ = ["gru_parts", "network_scorer", "vector_lookup"]
