"""Heads on the session embedding and the whole model (method.md §4).

- Anomaly classifier: one linear layer → 2 logits (normal, anomalous), orthogonal init, as the MetaLog code's head
  [ML-code]; P(anomaly) = softmax(logits)[:, 1].
- Domain discriminator: a small MLP → 1 logit (source 0, target 1) behind a gradient-reversal layer [inference: DANN,
  the standard reading of ZeroLog's "domain-adversarial" objective; its architecture is not stated by any source].
"""

from __future__ import annotations

import torch
from torch import nn

from zerolog.config import EncoderConfig
from zerolog.model.encoder import SessionEncoder
from zerolog.model.grl import reverse_gradient


class AnomalyClassifier(nn.Module):
    """(batch, embedding) → (batch, 2) logits."""

    def __init__(self, embedding_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(embedding_size, 2)
        nn.init.orthogonal_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.linear(embedding)


class DomainDiscriminator(nn.Module):
    """(batch, embedding) → (batch,) domain logit, with the gradient into the embedding reversed and scaled by λ."""

    def __init__(self, embedding_size: int, hidden_size: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(embedding_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 1))

    def forward(self, embedding: torch.Tensor, coefficient: float) -> torch.Tensor:
        return self.layers(reverse_gradient(embedding, coefficient)).squeeze(-1)


class ZeroLogModel(nn.Module):
    """Encoder + anomaly classifier + domain discriminator; system-agnostic (inputs are vectors, not ids).

    ``forward(vectors, lengths=None)`` returns class logits, so the module can be served as is (MLflow pyfunc passes
    only the zero-padded vectors; lengths are then recovered from the padding).
    """

    def __init__(
        self, input_size: int, encoder: EncoderConfig, discriminator_hidden_size: int, recurrence: str = "unrolled"
    ) -> None:
        super().__init__()
        self.encoder = SessionEncoder(input_size, encoder, recurrence)
        self.classifier = AnomalyClassifier(self.encoder.output_size)
        self.discriminator = DomainDiscriminator(self.encoder.output_size, discriminator_hidden_size)

    def embed(self, vectors: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(vectors, lengths)  # (batch, 2 * hidden)

    def forward(self, vectors: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.embed(vectors, lengths))  # (batch, 2)

    def anomaly_probability(self, vectors: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return torch.softmax(self.forward(vectors, lengths), dim=-1)[:, 1]  # (batch,)
