"""Session encoder: frozen template vectors → 2-layer bidirectional GRU → additive attention pooling (method.md §4).

The encoder never sees template ids or files: it takes a batch of template-vector sequences
``(batch, seq_len, dim)`` and their true lengths. Each system keeps its own frozen vector table
(``tensors/<system>/vectors.npy``, row 0 = padding) and :func:`lookup_vectors` turns that system's index rows into
vectors before the encoder, so one encoder serves several systems whose tables differ in size and order.
The vector dimension must match across systems (one embedding model for all, stage ``embed``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from zerolog.config import EncoderConfig
from zerolog.model.packed_gru import packed_gru, unrolled_applies


def lookup_vectors(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Frozen lookup of template vectors.

    ``table`` (templates + 1, dim), ``index`` (batch, seq_len) → (batch, seq_len, dim).

    The table is data, not a parameter: no gradient reaches it (method.md §3, frozen template vectors).
    """
    return nn.functional.embedding(index.long(), table.detach())


def lengths_from_padding(vectors: torch.Tensor) -> torch.Tensor:
    """True lengths of zero-padded sequences: one past the last position whose vector is not all zeros (≥ 1).

    Used when a caller (e.g. an MLflow pyfunc client) passes only the padded vectors.
    """
    nonzero = vectors.abs().sum(dim=-1) > 0  # (batch, seq_len)
    positions = torch.arange(1, vectors.shape[1] + 1, device=vectors.device)  # (seq_len,)
    return (nonzero * positions).amax(dim=1).clamp(min=1)  # (batch,)


class AttentionPooling(nn.Module):
    """Additive attention with a learned guide (query) vector and a masked softmax over time.

    e_t = vᵀ tanh(W h_t + U g), α = softmax over the true positions of e, output Σ_t α_t h_t.
    Follows the description in method.md §4 (a learned guide vector scores each state; masked softmax;
    attention-weighted sum); the exact parametrisation is ours.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.guide = nn.Parameter(torch.empty(size))
        self.state_projection = nn.Linear(size, size, bias=True)
        self.guide_projection = nn.Linear(size, size, bias=False)
        self.score = nn.Linear(size, 1, bias=False)
        nn.init.normal_(self.guide, std=size**-0.5)

    def weights(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """α: (batch, seq_len) attention weights over the true positions (0 on padding); what zerolog detect reports
        as the templates that weigh most in a session's score."""
        # states (batch, seq_len, size); mask (batch, seq_len) True on real positions
        query = self.guide_projection(self.guide)  # (size,)
        energies = self.score(torch.tanh(self.state_projection(states) + query)).squeeze(-1)  # (batch, seq_len)
        energies = energies.masked_fill(~mask, torch.finfo(energies.dtype).min)
        return torch.softmax(energies, dim=1)  # (batch, seq_len)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bt,bts->bs", self.weights(states, mask), states)  # (batch, size)


class SessionEncoder(nn.Module):
    """(batch, seq_len, dim) template vectors + lengths → (batch, 2 * hidden_size) session embedding."""

    def __init__(self, input_size: int, config: EncoderConfig, recurrence: str = "unrolled") -> None:
        super().__init__()
        self.input_size = input_size
        self.fused = recurrence == "fused"  # train.recurrence: how training steps run the GRU (packed_gru.py)
        self.gru = nn.GRU(
            input_size=input_size,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.attention = AttentionPooling(2 * config.hidden_size)
        self.output_size = 2 * config.hidden_size

    def forward(self, vectors: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.attention(*self.states(vectors, lengths))  # (batch, 2 * hidden)

    def states(self, vectors: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The GRU's states (batch, seq_len, 2 * hidden) and the mask of true positions (batch, seq_len)."""
        # vectors (batch, seq_len, dim); lengths (batch,) true lengths ≥ 1
        if lengths is None:
            lengths = lengths_from_padding(vectors)
        sequence_length = vectors.shape[1]
        # Packing makes the backward direction start at each session's true last event, not at the padding.
        packed = pack_padded_sequence(vectors, lengths.cpu().long(), batch_first=True, enforce_sorted=False)
        if unrolled_applies(self.gru, vectors):  # training on the CPU: the same numbers, without aten's slice waste
            packed_states = packed_gru(self.gru, packed, self.fused)
        else:
            packed_states, _ = self.gru(packed)
        states, _ = pad_packed_sequence(packed_states, batch_first=True, total_length=sequence_length)
        # states (batch, seq_len, 2 * hidden)
        positions = torch.arange(sequence_length, device=vectors.device)  # (seq_len,)
        mask = positions.unsqueeze(0) < lengths.to(vectors.device).unsqueeze(1)  # (batch, seq_len)
        return states, mask
