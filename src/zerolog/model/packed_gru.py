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

import itertools
from typing import Any

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


def packed_gru(gru: nn.GRU, packed: PackedSequence, fused: bool = False) -> PackedSequence:
    """``gru(packed)[0]`` of a bidirectional ``gru`` (zero initial state), computed as torch's CPU kernel does.

    ``fused`` (``train.recurrence: fused``): a hand-written backward (:class:`_Recurrence`) and layer 0's input gates
    computed once per distinct input row (:func:`_distinct_rows`): the same function, rounded differently.
    The weights are read as attributes, so ``torch.func.functional_call`` (the meta step's θ') reaches them.
    """
    sizes = [int(size) for size in packed.batch_sizes.tolist()]  # sessions still running at each time step
    data = packed.data  # (tokens, input_size), packed order
    initial = torch.zeros(sizes[0], gru.hidden_size, dtype=data.dtype, device=data.device)  # (batch, hidden)
    distinct = _distinct_rows(data) if fused and not data.requires_grad else None
    for layer in range(gru.num_layers):
        directions = []
        for suffix, direction in (("", _forward_direction), ("_reverse", _reverse_direction)):
            weight_ih, weight_hh, bias_ih, bias_hh = (
                getattr(gru, f"{name}_l{layer}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            if layer == 0 and distinct is not None:
                rows, inverse = distinct  # (distinct, input_size), (tokens,)
                input_gates = nn.functional.linear(rows, weight_ih, bias_ih)[inverse]  # (tokens, 3 * hidden)
            else:
                input_gates = nn.functional.linear(data, weight_ih, bias_ih)  # (tokens, 3 * hidden)
            if fused:
                directions.append(_Recurrence.apply(input_gates, weight_hh, bias_hh, sizes, bool(suffix)))
            else:
                gates = torch.split(input_gates, sizes)  # per step (size, 3 * hidden)
                directions.append(direction(list(gates), sizes, initial, weight_hh, bias_hh))
        data = torch.cat(directions, -1)  # (tokens, 2 * hidden)
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)


def _distinct_rows(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The distinct rows of ``data`` (tokens, dim) and each token's row, or None when two rows share a key.

    A session is a sequence of frozen template vectors, so a batch of ~3,000 tokens holds a few dozen distinct rows:
    projecting those and gathering gives every token's input gates at a fraction of the cost (the same values up to
    the rounding of a matrix product, which may depend on its row count). Rows are keyed by one float64 weighted sum
    (torch.unique over whole rows costs more than the projection it saves), and the gather is checked equal to
    ``data``, so a key collision falls back to the full projection.
    """
    weights = torch.linspace(1.0, 2.0, data.shape[1], dtype=torch.float64, device=data.device)  # (dim,)
    keys, inverse = torch.unique((data.double() * weights).sum(1), return_inverse=True)  # (distinct,), (tokens,)
    positions = torch.arange(data.shape[0], device=data.device)  # (tokens,)
    first = torch.full_like(keys, data.shape[0], dtype=torch.long).scatter_reduce_(0, inverse, positions, "amin")
    rows = data[first]  # (distinct, dim)
    return (rows, inverse) if torch.equal(rows[inverse], data) else None


class _Recurrence(torch.autograd.Function):
    """One direction of a GRU layer over a packed batch, with a hand-written backward (``train.recurrence: fused``).

    Forward: the same operations in the same order as :func:`_cell`, without autograd recording ~12 nodes per time
    step. Backward: per time step only what is sequential (the carried hidden gradient: one
    product with W_hh and two element-wise operations); the gate gradients of all steps are then formed at once and
    W_hh's gradient is one (3 * hidden, tokens) x (tokens, hidden) product instead of a small one per step.
    Measured on hdfs -> bgl (bench/train.py): see bench/train_results.md. The sums run in another order than
    autograd's, so gradients differ in the last bits (tests/model/test_model.py: gradcheck in float64, and
    torch.nn.GRU's gradients to float32 precision).
    """

    @staticmethod
    def forward(
        ctx: Any,
        input_gates: torch.Tensor,
        weight_hh: torch.Tensor,
        bias_hh: torch.Tensor,
        sizes: list[int],
        reverse: bool,
    ) -> torch.Tensor:
        # input_gates (tokens, 3 * hidden) packed order; weight_hh (3 * hidden, hidden); sizes: sessions per step
        hidden_size = weight_hh.shape[1]
        offsets = [0, *itertools.accumulate(sizes)]
        tokens = offsets[-1]
        outputs = input_gates.new_empty(tokens, hidden_size)  # h_t per token
        previous = input_gates.new_zeros(tokens, hidden_size)  # h_{t-1} per token (zero where a session starts)
        reset = input_gates.new_empty(tokens, hidden_size)
        update = input_gates.new_empty(tokens, hidden_size)
        new = input_gates.new_empty(tokens, hidden_size)
        hidden_new = input_gates.new_empty(tokens, hidden_size)  # W_hn h_{t-1} + b_hn
        order = range(len(sizes) - 1, -1, -1) if reverse else range(len(sizes))
        hidden = None
        for step in order:
            start, size = offsets[step], sizes[step]
            if hidden is not None:
                kept = min(size, hidden.shape[0])
                previous[start : start + kept] = hidden[:kept]
            rows = slice(start, start + size)
            input_parts = input_gates[rows].unsafe_chunk(3, 1)
            hidden_parts = nn.functional.linear(previous[rows], weight_hh, bias_hh).unsafe_chunk(3, 1)
            torch.sigmoid(hidden_parts[0].add_(input_parts[0]), out=reset[rows])
            torch.sigmoid(hidden_parts[1].add_(input_parts[1]), out=update[rows])
            hidden_new[rows] = hidden_parts[2]
            torch.tanh(input_parts[2].add(hidden_parts[2].mul_(reset[rows])), out=new[rows])
            hidden = torch.sub(previous[rows], new[rows], out=outputs[rows]).mul_(update[rows]).add_(new[rows])
        ctx.save_for_backward(weight_hh, previous, reset, update, new, hidden_new)
        ctx.sizes, ctx.offsets, ctx.reverse = sizes, offsets, reverse
        return outputs

    @staticmethod
    def backward(ctx: Any, output_gradient: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight_hh, previous, reset, update, new, hidden_new = ctx.saved_tensors
        sizes, offsets = ctx.sizes, ctx.offsets
        # h = n + z (h_prev - n); n = tanh(x_n + r hn); r, z = sigmoid(x_r + h_r), sigmoid(x_z + h_z).
        # Per token, dL/d(pre-activations) = dL/dh * these factors (all (tokens, hidden)):
        new_factor = (1 - new * new) * (1 - update)  # d n-preactivation / dh
        update_factor = (previous - new) * update * (1 - update)  # d z-preactivation / dh
        reset_factor = new_factor * hidden_new * reset * (1 - reset)  # d r-preactivation / dh
        hidden_factors = torch.cat([reset_factor, update_factor, new_factor * reset], 1)  # (tokens, 3 * hidden)
        hidden_gradient = torch.empty_like(output_gradient)  # dL/dh_t per token, carried through time
        gates_hidden = torch.empty_like(hidden_factors)  # dL/d(W_hh h_{t-1} + b_hh) per token
        order = range(len(sizes)) if ctx.reverse else range(len(sizes) - 1, -1, -1)
        carried = None  # dL/dh_{t-1} of the step computed after this one, (its size, hidden)
        for step in order:
            start, size = offsets[step], sizes[step]
            rows = slice(start, start + size)
            gradient = hidden_gradient[rows].copy_(output_gradient[rows])  # (size, hidden)
            if carried is not None:
                kept = min(size, carried.shape[0])
                gradient[:kept] += carried[:kept]
            gates = torch.mul(
                gradient.unsqueeze(1), hidden_factors[rows].view(size, 3, -1), out=gates_hidden[rows].view(size, 3, -1)
            ).view(size, -1)  # (size, 3 * hidden)
            carried = torch.addmm(gradient * update[rows], gates, weight_hh)  # dL/dh_{t-1}, (size, hidden)
        # dL/d(input gates): the r and z parts equal the hidden gates' (formed in the loop); the n part lacks r.
        hidden_size = hidden_gradient.shape[1]
        gates_input = torch.cat([gates_hidden[:, : 2 * hidden_size], hidden_gradient * new_factor], 1)
        return gates_input, gates_hidden.t() @ previous, gates_hidden.sum(0), None, None
