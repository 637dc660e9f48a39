"""Gradient reversal layer (method.md §4, [inference]: the standard DANN reading of ZeroLog's adversarial objective).

Why: one backward pass then trains the domain discriminator to tell source from target (it sees the ordinary
gradient of the domain loss) while pushing the encoder the opposite way (it sees the gradient times −λ), so the
encoder learns session embeddings the discriminator cannot separate: system-agnostic features.
"""

from __future__ import annotations

import torch


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by −coefficient."""

    @staticmethod
    def forward(context: torch.autograd.function.FunctionCtx, inputs: torch.Tensor, coefficient: float) -> torch.Tensor:
        context.coefficient = coefficient  # type: ignore[attr-defined]  # ctx carries state to backward
        return inputs.view_as(inputs)

    @staticmethod
    def backward(context: torch.autograd.function.FunctionCtx, gradient: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -context.coefficient * gradient, None  # type: ignore[attr-defined]


def reverse_gradient(inputs: torch.Tensor, coefficient: float) -> torch.Tensor:
    """Return ``inputs`` unchanged; gradients flowing back through it are multiplied by ``-coefficient``."""
    return _ReverseGradient.apply(inputs, float(coefficient))
