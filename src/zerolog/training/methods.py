"""The training methods: settings of ONE trainer (training/loop.py), so that they differ only where they must.

| method | labeled data | domain loss (DANN, GRL) | meta-learning (§5) | role |
|---|---|---|---|---|
| ``zerolog`` | source train | yes | yes | the method (method.md §4 + §5, our reading) |
| ``source_only`` | source train | no | no | lower bound: no adaptation at all |
| ``dann`` | source train | yes | no | ablation: adversarial adaptation alone |
| ``meta`` | source train | no | yes | ablation: meta-learning alone (MLDG-style on source halves) |
| ``zerolog_adapt`` | source train (+ pseudo-labeled target) | yes, importance-weighted | yes | + train.adapt |
| ``supervised_target`` | TARGET train | no | no | ORACLE: same encoder on the target's own labels (stage baselines) |

All but ``supervised_target`` read no target label: the target enters only as an unlabeled batch of the domain loss
(and, for ``zerolog_adapt``, through a label-free detector's π̂ and pseudo-labels; adapt.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from zerolog.artifacts import method_spec
from zerolog.errors import ZerologError


class MethodError(ZerologError, ValueError):
    """An unknown method name."""


@dataclass(frozen=True)
class MethodSettings:
    """What one method switches on in the trainer."""

    name: str
    labeled_domain: Literal["source", "target"]  # whose train labels the classifier learns from
    domain_loss: bool  # DANN: discriminator behind a gradient-reversal layer, source vs unlabeled target
    meta_learning: bool  # first-order meta step (inner step on meta-train, outer on meta-test)
    adapt: bool = False  # train.adapt: importance-weighted domain loss and self-training on the target (adapt.py)

    @property
    def oracle(self) -> bool:
        """Reads target labels: an upper bound, never a zero-label result (the method registry says which)."""
        return method_spec(self.name).oracle

    @property
    def uses_unlabeled_target(self) -> bool:
        return self.domain_loss


METHODS: dict[str, MethodSettings] = {
    "zerolog": MethodSettings("zerolog", "source", domain_loss=True, meta_learning=True),
    "source_only": MethodSettings("source_only", "source", domain_loss=False, meta_learning=False),
    "dann": MethodSettings("dann", "source", domain_loss=True, meta_learning=False),
    "meta": MethodSettings("meta", "source", domain_loss=False, meta_learning=True),
    "zerolog_adapt": MethodSettings("zerolog_adapt", "source", domain_loss=True, meta_learning=True, adapt=True),
    "supervised_target": MethodSettings("supervised_target", "target", domain_loss=False, meta_learning=False),
}


def method_settings(name: str) -> MethodSettings:
    """The settings of method ``name``; MethodError naming the known ones otherwise."""
    if name not in METHODS:
        raise MethodError(f"train.methods: unknown method {name!r} (known: {', '.join(METHODS)})")
    return METHODS[name]
