"""The bidirectional GRU over a packed batch, unrolled op for op as torch's CPU kernel, for training steps.

Why: on the CPU, ``torch.nn.GRU`` on a ``PackedSequence`` (aten ``PackedLayer`` / ``ReversedPackedLayer``, torch
2.13) computes each direction's input gates for all tokens at once, then takes each time step's rows with
``narrow``. The backward of every ``narrow`` allocates a zero tensor the size of ALL the gates (tokens, 3 * hidden)
and the autograd engine adds it into the gates' gradient: per backward pass, layers x 2 directions x time steps
full-size fills and additions. That was ~15-20% of a zerolog training step (bench/train.py, issue 20).

What: the same operations in the same order (the input-gate ``linear`` over all tokens, per step the hidden-gate
``linear``, ``unsafe_chunk``, in-place ``add_``/``sigmoid_``/``mul_``/``tanh_``, the hidden state narrowed or
extended with zero rows as the batch shrinks or grows), but the gates are cut with one ``torch.split``, whose
backward concatenates the steps' gradients once. Every value and every gradient is bit-identical to
``torch.nn.GRU``'s (tests/model/test_model.py compares them with ``torch.equal``): adding the zero fill never
changed a number, and each weight's gradient is accumulated over the steps in the same order.

Used only where it pays and is proven equal: CPU, gradients recorded, no dropout between layers, no initial
hidden state (the encoder's case). Scoring without gradients keeps ``torch.nn.GRU`` (a faster kernel there).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence


def unrolled_applies(gru: nn.GRU, data: torch.Tensor) -> bool:
    """Whether :func:`packed_gru` replaces ``gru`` on ``data``: CPU, gradients on, bidirectional, no dropout."""
    no_dropout = gru.num_layers == 1 or gru.dropout == 0.0 or not gru.training
    plain = gru.bidirectional and gru.bias and gru.proj_size == 0
    return data.device.type == "cpu" and torch.is_grad_enabled() and plain and no_dropout


def _cell(
    step_gates: torch.Tensor, hidden: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor
) -> torch.Tensor:
    """One GRU step as aten's ``GRUCell`` with precomputed input gates (the same ops, in-place where it is)."""
    # step_gates (batch, 3 * hidden): W_ih x + b_ih of this step; hidden (batch, hidden)
    input_gates = step_gates.unsafe_chunk(3, 1)
    hidden_gates = nn.functional.linear(hidden, weight_hh, bias_hh).unsafe_chunk(3, 1)
    reset_gate = hidden_gates[0].add_(input_gates[0]).sigmoid_()
    update_gate = hidden_gates[1].add_(input_gates[1]).sigmoid_()
    new_gate = input_gates[2].add(hidden_gates[2].mul_(reset_gate)).tanh_()
    return (hidden - new_gate).mul_(update_gate).add_(new_gate)  # (batch, hidden)


def _forward_direction(gates: list[torch.Tensor], sizes: list[int], initial: torch.Tensor,
                       weight_hh: torch.Tensor, bias_hh: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """aten ``PackedLayer``: steps in time order; finished sessions (the last rows) leave the hidden state."""
    outputs, hidden, last_size = [], initial, sizes[0]
    for size, step_gates in zip(sizes, gates, strict=True):
        if size < last_size:
            hidden = hidden.narrow(0, 0, size)
        last_size = size
        hidden = _cell(step_gates, hidden, weight_hh, bias_hh)
        outputs.append(hidden)
    return torch.cat(outputs, 0)  # (tokens, hidden), packed order


def _reverse_direction(gates: list[torch.Tensor], sizes: list[int], initial: torch.Tensor,
                       weight_hh: torch.Tensor, bias_hh: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """aten ``ReversedPackedLayer``: steps from the last; sessions join with their initial (zero) hidden rows."""
    last_size = sizes[-1]
    hidden = initial.narrow(0, 0, last_size)
    outputs = []
    for step in range(len(sizes) - 1, -1, -1):
        size = sizes[step]
        if size > last_size:
            hidden = torch.cat([hidden, initial.narrow(0, last_size, size - last_size)], 0)
        last_size = size
        hidden = _cell(gates[step], hidden, weight_hh, bias_hh)
        outputs.append(hidden)
    outputs.reverse()
    return torch.cat(outputs, 0)  # (tokens, hidden), packed order


def packed_gru(gru: nn.GRU, packed: PackedSequence) -> PackedSequence:
    """``gru(packed)[0]`` of a bidirectional ``gru`` (zero initial state), computed as torch's CPU kernel does.

    The weights are read as attributes, so ``torch.func.functional_call`` (the meta step's θ') reaches them.
    """
    sizes = [int(size) for size in packed.batch_sizes.tolist()]  # sessions still running at each time step
    data = packed.data  # (tokens, input_size), packed order
    initial = torch.zeros(sizes[0], gru.hidden_size, dtype=data.dtype, device=data.device)  # (batch, hidden)
    for layer in range(gru.num_layers):
        directions = []
        for suffix, direction in (("", _forward_direction), ("_reverse", _reverse_direction)):
            weight_ih, weight_hh, bias_ih, bias_hh = (
                getattr(gru, f"{name}_l{layer}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            gates = torch.split(nn.functional.linear(data, weight_ih, bias_ih), sizes)  # per step (size, 3 * hidden)
            directions.append(direction(list(gates), sizes, initial, weight_hh, bias_hh))
        data = torch.cat(directions, -1)  # (tokens, 2 * hidden)
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
