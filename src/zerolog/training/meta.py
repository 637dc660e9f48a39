"""The optimisation step of the trainer: the losses, a plain step, and the first-order meta step.

Losses (method.md §4):
- L_cls(S): cross-entropy of the anomaly classifier on a labeled batch S (class-weighted when
  ``train.class_balance.method`` is ``weighted_loss``; see loop.py).
- L_dom(S, T): binary cross-entropy of the domain discriminator, source sessions 0, unlabeled target sessions 1, the
  mean of the two domains' means (so a half-size meta batch weighs as much as the target batch).
  [inference, DANN] The discriminator sits behind a gradient-reversal layer with coefficient λ: it descends L_dom with
  weight 1 while the encoder receives −λ·∇L_dom. This is how "L_cls + λ·L_dom" is realised; the value logged as
  ``loss/domain`` is the raw L_dom.

Meta-learning regime (method.md §5). What the sources state: ZeroLog names "meta-task training" and nothing more
[ZL]; the MetaLog code [ML-code] does a first-order MLDG-like step with α = 2e-3, β = 1 and one Adam step on
∇L_tr(θ) + β·∇L_te(θ'), where the meta-test batch is the (pseudo-)labeled TARGET. What we chose, because ZeroLog has
no target label: each step draws one labeled source batch and one unlabeled target batch T; the source batch is cut
into meta-train S1 and meta-test S2 (``train.meta.split``: random halves, or chronological halves, S1 the earlier
sessions, so meta-test simulates a later shift); then

    inner:  θ' = θ − α·∇_θ [L_cls(S1) + L_dom(S1, T)]                  (α = train.meta.inner_learning_rate)
    outer:  g  = ∇_θ [L_cls(S1) + L_dom(S1, T)] + β·∇_θ' [L_cls(S2) + L_dom(S2, T)]   (β = train.meta.outer_weight)
    θ ← Adam(θ, g)

With ``zerolog_adapt`` (adapt.py): the source half of L_dom is importance-weighted (``domain_weights``), and in
self-training rounds the meta-test loss adds L_cls(P) of a pseudo-labeled target batch P at θ' (MetaLog's meta-test
is the target); a plain step adds L_cls(P) to its loss.

First-order: the inner gradient is a constant, so ∇ at θ' is used for θ (no second derivatives), as in MetaLog.
θ' is evaluated with ``torch.func.functional_call``, leaving the module's own parameters untouched. Methods without
the domain loss drop the L_dom terms (and never look at T); methods without meta-learning take a plain step on the
whole source batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from zerolog.config import MetaConfig
from zerolog.model import ZeroLogModel
from zerolog.training.methods import MethodSettings


@dataclass(frozen=True)
class Batch:
    """A batch of sessions already turned into vectors (one or several systems; target batches one system)."""

    vectors: torch.Tensor  # (batch, seq_len, dim) on the training device, zero-padded
    lengths: torch.Tensor  # (batch,) int64 on the CPU (pack_padded_sequence wants CPU lengths)
    labels: torch.Tensor | None  # (batch,) int64 0/1 on the device; None for unlabeled target batches
    positions: np.ndarray  # (batch,) relative position of each session in its system (row / sessions), in [0, 1)

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def subset(self, chosen: np.ndarray) -> Batch:
        """The sessions ``chosen`` (indices into this batch), trimmed to their longest length."""
        lengths = self.lengths[torch.as_tensor(chosen, dtype=torch.long)]
        longest = int(lengths.max())
        index = torch.as_tensor(chosen, dtype=torch.long, device=self.vectors.device)
        labels = None if self.labels is None else self.labels[index]
        return Batch(self.vectors[index, :longest], lengths, labels, self.positions[chosen])


@dataclass(frozen=True)
class PseudoTask:
    """A pseudo-labeled target batch and the class weights of its loss (None: unweighted)."""

    batch: Batch  # labels: the pseudo-labels 0/1
    class_weights: torch.Tensor | None  # (2,)


def concatenate_padded(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Stack two (n, t, dim) batches with different t into one (n1 + n2, max t, dim), zero-padded."""
    longest = max(first.shape[1], second.shape[1])
    pad = lambda tensor: nn.functional.pad(tensor, (0, 0, 0, longest - tensor.shape[1]))  # noqa: E731
    return torch.cat([pad(first), pad(second)], dim=0)


class TrainingOutputs(nn.Module):
    """Adapter whose ``forward`` gives what the losses need, so ``functional_call`` can evaluate it at θ'.

    Parameter names are the model's, prefixed ``model.``.
    """

    def __init__(self, model: ZeroLogModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, vectors: torch.Tensor, lengths: torch.Tensor, source_count: int, coefficient: float, with_domain: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # vectors (source + target, seq_len, dim): one encoder pass over both domains
        embedding = self.model.embed(vectors, lengths)  # (source + target, 2 * hidden)
        class_logits = self.model.classifier(embedding[:source_count])  # (source, 2)
        domain_logits = self.model.discriminator(embedding, coefficient) if with_domain else None  # (source + target,)
        return class_logits, domain_logits


def objective(
    outputs: nn.Module,
    parameters: dict[str, torch.Tensor] | None,
    source: Batch,
    target: Batch | None,
    settings: MethodSettings,
    coefficient: float,
    class_weights: torch.Tensor | None,
    domain_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_cls(source) [+ L_dom(source, target)] at the module's parameters, or at ``parameters`` (θ') when given.

    ``domain_weights`` (2,): source session i weighs ``domain_weights[y_i]`` in the source half of L_dom (IWDAN).
    """
    with_domain = settings.domain_loss
    if with_domain:
        if target is None:
            raise ValueError(f"method {settings.name}: the domain loss needs an unlabeled target batch")
        vectors = concatenate_padded(source.vectors, target.vectors)
        lengths = torch.cat([source.lengths, target.lengths])
    else:
        vectors, lengths = source.vectors, source.lengths
    arguments = (vectors, lengths, len(source), coefficient, with_domain)
    if parameters is None:
        class_logits, domain_logits = outputs(*arguments)
    else:
        class_logits, domain_logits = functional_call(outputs, parameters, arguments)
    assert source.labels is not None  # the source batch is always labeled (only target batches have None)
    classification = nn.functional.cross_entropy(class_logits, source.labels, weight=class_weights)
    parts = {"loss/classification": float(classification.detach())}
    total = classification
    if with_domain:
        assert domain_logits is not None and target is not None
        source_logits, target_logits = domain_logits[: len(source)], domain_logits[len(source) :]
        source_weights = None if domain_weights is None else domain_weights[source.labels]  # (source,)
        domain = 0.5 * (
            nn.functional.binary_cross_entropy_with_logits(
                source_logits, torch.zeros_like(source_logits), weight=source_weights
            )
            + nn.functional.binary_cross_entropy_with_logits(target_logits, torch.ones_like(target_logits))
        )
        accuracy = 0.5 * ((source_logits < 0).float().mean() + (target_logits >= 0).float().mean())
        parts["loss/domain"] = float(domain.detach())
        parts["train/domain_accuracy"] = float(accuracy)
        total = total + domain
    parts["loss/total"] = float(total.detach())
    return total, parts


def pseudo_objective(
    outputs: nn.Module, parameters: dict[str, torch.Tensor] | None, task: PseudoTask, settings: MethodSettings
) -> tuple[torch.Tensor, float]:
    """L_cls of the pseudo-labeled target batch (no domain term: these sessions are target sessions)."""
    without_domain = dataclasses.replace(settings, domain_loss=False)
    loss, _ = objective(outputs, parameters, task.batch, None, without_domain, 0.0, task.class_weights)
    return loss, float(loss.detach())


def split_meta_batch(batch: Batch, how: str, generator: np.random.Generator) -> tuple[Batch, Batch]:
    """Cut a source batch into meta-train S1 and meta-test S2 halves: at random, or S1 = the earlier sessions."""
    if how == "random":
        order = generator.permutation(len(batch))
    elif how == "chronological":
        order = np.argsort(batch.positions, kind="stable")
    else:
        raise ValueError(f"train.meta.split: unknown value {how!r}")
    half = len(batch) // 2
    return batch.subset(order[:half]), batch.subset(order[half:])


def _apply_gradients(model: nn.Module, optimizer: torch.optim.Optimizer, clip_norm: float | None) -> None:
    if clip_norm is not None and clip_norm > 0:
        nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()


def plain_step(
    model: ZeroLogModel,
    optimizer: torch.optim.Optimizer,
    source: Batch,
    target: Batch | None,
    settings: MethodSettings,
    coefficient: float,
    class_weights: torch.Tensor | None,
    clip_norm: float | None,
    domain_weights: torch.Tensor | None = None,
    pseudo: PseudoTask | None = None,
) -> dict[str, float]:
    """One ordinary gradient step on L_cls(source) [+ L_dom(source, target)] [+ L_cls(pseudo-labeled target)]."""
    optimizer.zero_grad(set_to_none=True)
    outputs = TrainingOutputs(model)
    loss, parts = objective(outputs, None, source, target, settings, coefficient, class_weights, domain_weights)
    if pseudo is not None:
        pseudo_loss, parts["loss/pseudo"] = pseudo_objective(outputs, None, pseudo, settings)
        loss = loss + pseudo_loss
    loss.backward()
    _apply_gradients(model, optimizer, clip_norm)
    return parts


def meta_step(
    model: ZeroLogModel,
    optimizer: torch.optim.Optimizer,
    source: Batch,
    target: Batch | None,
    settings: MethodSettings,
    config: MetaConfig,
    coefficient: float,
    class_weights: torch.Tensor | None,
    clip_norm: float | None,
    generator: np.random.Generator,
    domain_weights: torch.Tensor | None = None,
    pseudo: PseudoTask | None = None,
) -> dict[str, float]:
    """One first-order meta step (module docstring); returns the meta-train parts and ``loss/meta`` (meta-test at θ',
    the pseudo-labeled target's term included when ``pseudo`` is given; ``loss/pseudo`` is that term alone)."""
    outputs = TrainingOutputs(model)
    named = dict(outputs.named_parameters())
    parameters = list(named.values())
    meta_train, meta_test = split_meta_batch(source, config.split, generator)

    # Inner: gradient of the meta-train loss at θ, and the virtual parameters θ' = θ − α·g.
    train_loss, parts = objective(outputs, None, meta_train, target, settings, coefficient, class_weights,
                                  domain_weights)  # fmt: skip
    train_gradients = torch.autograd.grad(train_loss, parameters, allow_unused=True)
    virtual = {
        name: (parameter.detach() - config.inner_learning_rate * gradient).requires_grad_()
        if gradient is not None
        else parameter.detach().requires_grad_()
        for name, parameter, gradient in zip(named, parameters, train_gradients, strict=True)
    }

    # Outer: gradient of the meta-test loss at θ' (first-order: applied to θ as is).
    test_loss, _ = objective(outputs, virtual, meta_test, target, settings, coefficient, class_weights, domain_weights)
    if pseudo is not None:
        pseudo_loss, parts["loss/pseudo"] = pseudo_objective(outputs, virtual, pseudo, settings)
        test_loss = test_loss + pseudo_loss
    test_gradients = torch.autograd.grad(test_loss, list(virtual.values()), allow_unused=True)

    optimizer.zero_grad(set_to_none=True)
    for parameter, train_gradient, test_gradient in zip(parameters, train_gradients, test_gradients, strict=True):
        if train_gradient is None and test_gradient is None:
            continue  # e.g. the discriminator of a method without the domain loss: Adam skips it
        total = torch.zeros_like(parameter)
        if train_gradient is not None:
            total = total + train_gradient
        if test_gradient is not None:
            total = total + config.outer_weight * test_gradient
        parameter.grad = total
    _apply_gradients(model, optimizer, clip_norm)
    parts["loss/meta"] = float(test_loss.detach())
    return parts
