"""The training methods: settings of ONE trainer (training/loop.py), so that they differ only where they must.

| method | labeled data | domain loss (DANN, GRL) | meta-learning (§5) | role |
|---|---|---|---|---|
| ``zerolog`` | source train | yes | yes | the method (method.md §4 + §5, our reading) |
| ``source_only`` | source train | no | no | lower bound: no adaptation at all |
| ``dann`` | source train | yes | no | ablation: adversarial adaptation alone |
| ``meta`` | source train | no | yes | ablation: meta-learning alone (MLDG-style on source halves) |
| ``zerolog_adapt`` | source train (+ pseudo-labeled target) | yes, importance-weighted | yes | + train.adapt |
| ``supervised_target`` | TARGET train | no | no | ORACLE: same encoder on the target's own labels (stage baselines) |

The switches of each method live in its entry of the method registry (``zerolog.methods.METHODS``), beside its
kind; this module is the trainer's view of them.

All but ``supervised_target`` read no target label: the target enters only as an unlabeled batch of the domain loss
(and, for ``zerolog_adapt``, through a label-free detector's π̂ and pseudo-labels; adapt.py).
"""

from __future__ import annotations

from zerolog.errors import ZerologError
from zerolog.methods import METHODS as REGISTRY
from zerolog.methods import MethodSettings


class MethodError(ZerologError, ValueError):
    """An unknown method name."""


#: The methods the trainer fits, in registry order: their switches live in the method registry
#: (``zerolog.methods.METHODS``), beside their kind, so that a method's name is written once.
METHODS: dict[str, MethodSettings] = {name: spec.trainer for name, spec in REGISTRY.items() if spec.trainer}


def method_settings(name: str) -> MethodSettings:
    """The settings of method ``name``; MethodError naming the known ones otherwise."""
    if name not in METHODS:
        raise MethodError(f"train.methods: unknown method {name!r} (known: {', '.join(METHODS)})")
    return METHODS[name]


__all__ = ["METHODS", "MethodError", "MethodSettings", "method_settings"]
