"""Model: gradient reversal, encoder masking/packing, system-agnostic heads."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from zerolog.config import EncoderConfig
from zerolog.model import SessionEncoder, ZeroLogModel, lookup_vectors, reverse_gradient
from zerolog.model.encoder import lengths_from_padding
from zerolog.model.packed_gru import packed_gru, unrolled_applies

ENCODER = EncoderConfig(hidden_size=8, num_layers=2, dropout=0.0)


@pytest.mark.parametrize("coefficient", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_negates_and_scales(coefficient: float) -> None:
    torch.manual_seed(0)
    inputs = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(3, dtype=torch.float64)

    (plain,) = torch.autograd.grad((torch.sin(inputs) * weights).sum(), inputs)
    reversed_output = reverse_gradient(inputs, coefficient)
    assert torch.equal(reversed_output, inputs)  # forward: identity
    (reversed_gradient,) = torch.autograd.grad((torch.sin(reversed_output) * weights).sum(), inputs)
    torch.testing.assert_close(reversed_gradient, -coefficient * plain)


def test_gradient_reversal_matches_finite_difference_of_negated_function() -> None:
    """The reversed gradient is −λ times the numerical gradient of the un-reversed function."""
    inputs = torch.tensor([0.2, -0.7, 1.1], dtype=torch.float64, requires_grad=True)
    function = lambda x: (x**3).sum()  # noqa: E731
    (gradient,) = torch.autograd.grad(function(reverse_gradient(inputs, 0.5)), inputs)
    step = 1e-6
    numerical = torch.stack(
        [(function(inputs + step * unit) - function(inputs - step * unit)) / (2 * step) for unit in torch.eye(3)]
    )
    torch.testing.assert_close(gradient, -0.5 * numerical.detach(), rtol=1e-6, atol=1e-8)


def test_encoder_ignores_padding_and_output_shape() -> None:
    """Padding beyond a session's length (any content) must not change its embedding: packing + masked softmax."""
    torch.manual_seed(1)
    encoder = SessionEncoder(5, ENCODER).eval()
    vectors = torch.randn(3, 7, 5)
    lengths = torch.tensor([7, 4, 1])
    embedding = encoder(vectors, lengths)
    assert embedding.shape == (3, 16)
    noisy = vectors.clone()
    noisy[1, 4:] = torch.randn(3, 5) * 10
    noisy[2, 1:] = torch.randn(6, 5) * 10
    torch.testing.assert_close(encoder(noisy, lengths), embedding)
    # a session alone, unpadded, gives the same embedding as inside the padded batch
    torch.testing.assert_close(encoder(vectors[1:2, :4], torch.tensor([4]))[0], embedding[1])


def test_lengths_from_padding_and_lookup() -> None:
    table = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, -1.0]])
    index = torch.tensor([[1, 2, 0, 0], [2, 2, 1, 0], [1, 0, 0, 0]])
    vectors = lookup_vectors(table, index)
    assert vectors.shape == (3, 4, 2)
    assert torch.equal(vectors[0, 1], table[2]) and torch.equal(vectors[0, 3], torch.zeros(2))
    assert lengths_from_padding(vectors).tolist() == [2, 3, 1]


def test_model_is_system_agnostic_and_lookup_is_frozen() -> None:
    """One model reads two systems with different vector tables; no gradient reaches the tables."""
    torch.manual_seed(2)
    model = ZeroLogModel(6, ENCODER, discriminator_hidden_size=4)
    first_table = torch.randn(11, 6, requires_grad=True)
    second_table = torch.randn(4, 6)
    first = lookup_vectors(first_table, torch.randint(1, 11, (2, 9)))
    second = lookup_vectors(second_table, torch.randint(1, 4, (3, 5)))
    for vectors in (first, second):
        probabilities = model.anomaly_probability(vectors, torch.full((vectors.shape[0],), vectors.shape[1]))
        assert probabilities.shape == (vectors.shape[0],)
        assert bool(((probabilities > 0) & (probabilities < 1)).all())
    model(first).sum().backward()
    assert first_table.grad is None
    assert model.encoder.gru.weight_ih_l0.grad is not None


def test_discriminator_gradient_into_encoder_is_reversed() -> None:
    """The discriminator's gradient w.r.t. the embedding arrives at the encoder multiplied by −λ."""
    torch.manual_seed(3)
    model = ZeroLogModel(4, ENCODER, discriminator_hidden_size=5)
    embedding = torch.randn(6, 16, requires_grad=True)
    (with_reversal,) = torch.autograd.grad(model.discriminator(embedding, 0.7).sum(), embedding)
    (plain,) = torch.autograd.grad(model.discriminator.layers(embedding).sum(), embedding)
    torch.testing.assert_close(with_reversal, -0.7 * plain)


def _packed_batch(seed: int, sessions: int, longest: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors (sessions, longest, size) and unsorted lengths with ties, the longest first and a length 1."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, longest + 1, (sessions,), generator=generator)
    lengths[3], lengths[5] = longest, 1
    return torch.randn(sessions, longest, size, generator=generator), lengths


class _Wrapped(nn.Module):
    """The GRU's packed states by torch's kernel or by packed_gru, callable through functional_call (θ')."""

    def __init__(self, gru: nn.GRU, unrolled: bool, fused: bool = False) -> None:
        super().__init__()
        self.gru, self.unrolled, self.fused = gru, unrolled, fused

    def forward(self, packed: PackedSequence) -> PackedSequence:
        return packed_gru(self.gru, packed, self.fused) if self.unrolled else self.gru(packed)[0]


@pytest.mark.parametrize("layers", [1, 2])
def test_unrolled_packed_gru_is_bit_identical_to_torch(layers: int) -> None:
    """packed_gru gives torch.nn.GRU's states and every gradient exactly (torch.equal), also at θ' through
    functional_call as the meta step evaluates it, and with a gradient into its input (stacked encoders)."""
    torch.manual_seed(4)
    gru = nn.GRU(12, 7, num_layers=layers, batch_first=True, bidirectional=True)
    vectors, lengths = _packed_batch(5, sessions=9, longest=11, size=12)
    vectors.requires_grad_()
    outer = torch.randn(9, 11, 14)  # a fixed linear read-out of the states
    virtual = {f"gru.{name}": (parameter.detach() * 0.9).requires_grad_() for name, parameter in gru.named_parameters()}
    assert unrolled_applies(gru, vectors)

    def run(unrolled: bool, parameters: dict[str, torch.Tensor] | None) -> list[torch.Tensor]:
        packed = pack_padded_sequence(vectors, lengths, batch_first=True, enforce_sorted=False)
        module = _Wrapped(gru, unrolled)
        states = module(packed) if parameters is None else functional_call(module, parameters, (packed,))
        padded, _ = pad_packed_sequence(states, batch_first=True, total_length=11)  # (9, 11, 14)
        weights = list(gru.parameters()) if parameters is None else list(parameters.values())
        return [padded, *torch.autograd.grad((padded * outer).sum(), [vectors, *weights])]

    for parameters in (None, virtual):
        expected, actual = run(False, parameters), run(True, parameters)
        assert all(torch.equal(left, right) for left, right in zip(expected, actual, strict=True))
    with torch.no_grad():
        assert not unrolled_applies(gru, vectors)  # scoring keeps torch's kernel


def _template_batch(seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Sessions of frozen template vectors, as the trainer builds them: (9, 11, 12) from a table of 5 rows."""
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(5, 12, generator=generator, dtype=dtype)
    _, lengths = _packed_batch(seed, sessions=9, longest=11, size=12)
    return table[torch.randint(0, 5, (9, 11), generator=generator)], lengths


@pytest.mark.parametrize("layers", [1, 2])
def test_fused_recurrence_gradients_pass_gradcheck(layers: int) -> None:
    """train.recurrence fused: the hand-written backward is the derivative of its forward (float64 gradcheck against
    finite differences), for every weight of both directions and for the input of a stacked layer."""
    torch.manual_seed(6)
    gru = nn.GRU(12, 3, num_layers=layers, batch_first=True, bidirectional=True).double()
    vectors, lengths = _template_batch(6, torch.float64)
    packed = pack_padded_sequence(vectors, lengths, batch_first=True, enforce_sorted=False)
    module = _Wrapped(gru, unrolled=True, fused=True)
    names = [name for name, _ in module.named_parameters()]

    def states(*weights: torch.Tensor) -> torch.Tensor:
        return functional_call(module, dict(zip(names, weights, strict=True)), (packed,), strict=True).data

    weights = tuple(parameter.detach().clone().requires_grad_() for parameter in gru.parameters())
    assert torch.autograd.gradcheck(states, weights, eps=1e-6, atol=1e-7, fast_mode=True)


def test_fused_recurrence_gives_torch_states_and_gradients_to_float_precision() -> None:
    """States and gradients equal to torch.nn.GRU's up to float32 rounding (sums in another order)."""
    torch.manual_seed(7)
    gru = nn.GRU(12, 7, num_layers=2, batch_first=True, bidirectional=True)
    vectors, lengths = _template_batch(7, torch.float32)
    packed = pack_padded_sequence(vectors, lengths, batch_first=True, enforce_sorted=False)
    outer = torch.randn(packed.data.shape[0], 14)
    expected = gru(packed)[0].data
    actual = packed_gru(gru, packed, fused=True).data
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    expected_gradients = torch.autograd.grad((expected * outer).sum(), list(gru.parameters()))
    actual_gradients = torch.autograd.grad((actual * outer).sum(), list(gru.parameters()))
    for left, right in zip(expected_gradients, actual_gradients, strict=True):
        torch.testing.assert_close(right, left, rtol=1e-5, atol=1e-6)


def test_distinct_rows_project_each_template_once_and_fall_back_on_a_key_collision() -> None:
    """Layer 0's input gates from the distinct rows equal the full projection; rows whose keys collide are refused."""
    from zerolog.model.packed_gru import _distinct_rows

    vectors, _ = _template_batch(8, torch.float32)
    data = vectors.reshape(-1, 12)  # (99, 12) tokens of 5 templates
    distinct = _distinct_rows(data)
    assert distinct is not None
    rows, inverse = distinct
    assert rows.shape[0] <= 5 and torch.equal(rows[inverse], data)
    weight, bias = torch.randn(21, 12), torch.randn(21)
    expected = nn.functional.linear(data, weight, bias)
    torch.testing.assert_close(nn.functional.linear(rows, weight, bias)[inverse], expected, rtol=1e-6, atol=1e-6)
    colliding = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # keys 2.0 * 1.0 = 2.0 and 1.0 * 2.0 = 2.0: one key
    assert _distinct_rows(colliding) is None
