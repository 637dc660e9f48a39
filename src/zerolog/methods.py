"""The method registry: which method is which kind (what it reads, where its scores live, whether it is an ORACLE),
whether it is stochastic, and what each method the encoder trainer fits switches on in it; each name written once.

Why its own module: the config schema (which methods a section may name), the artifact contracts (where a method's
scores live) and the trainer all read it, and none of them may import the others for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from zerolog.errors import ConfigError


class MethodKind(str, Enum):  # noqa: UP042 - kept a str mixin, not StrEnum: enum behaviour stays exactly as recorded
    """What a method reads, which decides where its scores live and how the report labels it."""

    TRANSFER = "transfer"  # source labels + the target's UNLABELED sessions (zero-label); scores per pair
    TARGET_ONLY = "target_only"  # the target's unlabeled train sessions alone (zero-label); scores per target
    RULE = "rule"  # a fixed rule, nothing fit (zero-label); scores per target
    ORACLE = "oracle"  # reads TARGET labels: an upper bound, never a zero-label result; scores per target
    SELECTED = "selected"  # a recipe of target-only detectors chosen on OTHER systems' labels (zero-label for the
    # target: leave-one-system-out); scores per target (stage selection)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class MethodSettings:
    """What one method switches on in the encoder trainer (training/loop.py): one trainer, so that the trained
    methods differ only where they must (zerolog.training.methods describes them)."""

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


@dataclass(frozen=True)
class MethodSpec:
    """One method of the results table."""

    name: str
    kind: MethodKind
    summary: str  # one line for the report
    stochastic: bool = True  # its result moves with the model seed: run once per seed of ``seeds``
    trainer: MethodSettings | None = None  # its switches when the encoder trainer fits it, else None

    @property
    def oracle(self) -> bool:
        return self.kind is MethodKind.ORACLE

    @property
    def per_pair(self) -> bool:
        """Transfer methods are trained per source->target pair; every other kind once per target system."""
        return self.kind is MethodKind.TRANSFER


def _trained(
    name: str,
    kind: MethodKind,
    summary: str,
    labeled_domain: Literal["source", "target"],
    domain_loss: bool,
    meta_learning: bool,
    adapt: bool = False,
) -> MethodSpec:
    """The registry entry of a method the encoder trainer fits, with its switches (the name written once)."""
    settings = MethodSettings(name, labeled_domain, domain_loss, meta_learning, adapt)
    return MethodSpec(name, kind, summary, trainer=settings)


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        _trained(
            "zerolog",
            MethodKind.TRANSFER,
            "ZeroLog: GRU encoder, domain-adversarial + meta-learning",
            "source",
            domain_loss=True,
            meta_learning=True,
        ),
        _trained(
            "source_only",
            MethodKind.TRANSFER,
            "the same encoder trained on source labels alone",
            "source",
            domain_loss=False,
            meta_learning=False,
        ),
        _trained(
            "dann",
            MethodKind.TRANSFER,
            "the encoder with the domain-adversarial loss, no meta-learning",
            "source",
            domain_loss=True,
            meta_learning=False,
        ),
        _trained(
            "meta",
            MethodKind.TRANSFER,
            "the encoder with meta-learning, no domain loss",
            "source",
            domain_loss=False,
            meta_learning=True,
        ),
        _trained(
            "zerolog_adapt",
            MethodKind.TRANSFER,
            "ZeroLog + importance-weighted alignment + self-training on "
            "pseudo-labels where it agrees with the target's PCA detector; cut at the top pi-hat share",
            "source",
            domain_loss=True,
            meta_learning=True,
            adapt=True,
        ),
        # Target-only, label-free: fit on the target's unlabeled train sessions (stage baselines,
        # zerolog.evaluation.detectors / deeplog / loglead_peer).
        MethodSpec(
            "pca_mixture",
            MethodKind.TARGET_ONLY,
            "PCA SPE on tf-idf event counts, cut by a 2-component mixture on the train SPE (pi-hat)",
            stochastic=False,
        ),
        MethodSpec("isolation_forest", MethodKind.TARGET_ONLY, "IsolationForest on the target's event counts"),
        MethodSpec(
            "pca",
            MethodKind.TARGET_ONLY,
            "loglizer's PCA: SPE on tf-idf event counts, Q-statistic cut",
            stochastic=False,
        ),
        MethodSpec(
            "invariants_mining", MethodKind.TARGET_ONLY, "Invariants Mining: integer count invariants", stochastic=False
        ),
        MethodSpec(
            "template_rarity",
            MethodKind.TARGET_ONLY,
            "rarity of the session's rarest template in train",
            stochastic=False,
        ),
        MethodSpec(
            "template_set_rarity",
            MethodKind.TARGET_ONLY,
            "rarity of the session's template set in train",
            stochastic=False,
        ),
        MethodSpec("deeplog", MethodKind.TARGET_ONLY, "DeepLog: LSTM next-event model, top-g misses"),
        MethodSpec("loglead_rarity", MethodKind.TARGET_ONLY, "LogLead's RarityModel on event counts", stochastic=False),
        MethodSpec("loglead_ngram", MethodKind.TARGET_ONLY, "LogLead's n-gram next-event model", stochastic=False),
        # PyOD off the shelf (its defaults: contamination 0.1 is its own cut)
        MethodSpec("pyod_iforest", MethodKind.TARGET_ONLY, "PyOD IForest, defaults (its cut: contamination 0.1)"),
        MethodSpec(
            "pyod_ecod", MethodKind.TARGET_ONLY, "PyOD ECOD, defaults (its cut: contamination 0.1)", stochastic=False
        ),
        MethodSpec(
            "pyod_copod", MethodKind.TARGET_ONLY, "PyOD COPOD, defaults (its cut: contamination 0.1)", stochastic=False
        ),
        # The product's detector: the recipe chosen leave-one-system-out (stage selection, evaluation/selection.py);
        # one file per model seed (a deterministic recipe writes the same scores for each).
        MethodSpec(
            "loso",
            MethodKind.SELECTED,
            "the recipe of target-only detectors and label-free cut chosen on "
            "the OTHER labeled systems' validation splits (leave-one-system-out)",
        ),
        MethodSpec(
            "level_rule", MethodKind.RULE, "a session with a line at WARNING or above is anomalous", stochastic=False
        ),
        _trained(
            "supervised_target",
            MethodKind.ORACLE,
            "the encoder trained on the TARGET's labels",
            "target",
            domain_loss=False,
            meta_learning=False,
        ),
    )
}


def method_spec(name: str, where: str = "method") -> MethodSpec:
    """The registry entry of ``name``; an unknown name is a ConfigError naming ``where``."""
    if name not in METHODS:
        raise ConfigError(f"{where}: unknown method {name!r} (known: {', '.join(METHODS)})")
    return METHODS[name]
