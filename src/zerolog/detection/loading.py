"""Which trained detector ``zerolog detect`` applies, from the last ``dvc repro`` or from the MLflow Model Registry.

- ``--pair P --method M`` (in the repository, after ``dvc repro``): a target-only method is the system's persisted
  detector (``models/target-<system>/detector/``, the recommended one); a transfer method is its checkpoint of the
  first model seed (``models/<pair>/<method>/seed-<s>/checkpoint.pt``) on the target's tensors, cut at the threshold
  the evaluate stage's headline rule gives it (computed by the evaluate stage's own functions from the method's
  score file: label-free inputs only). ORACLE methods read target labels: refused.
- ``--model models:/<name>/<version>``: a registered detector (zerolog.detection.registry): its bundle.

Either way the system's parser (log format, masking, known templates, session rule) comes from the system's bundle,
so a detector applies only to the system it was trained for: another ``--system`` is refused in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from zerolog.artifacts import ArtifactPaths, load_tensors, read_scores
from zerolog.config import ConfigError, Params, SessionRule
from zerolog.data.known_templates import KnownTemplates
from zerolog.detection.bundle import DetectorBundle, SystemContext, Threshold, read_bundle
from zerolog.detection.scoring import GruScorer, PcaScorer, Scorer
from zerolog.errors import DataError
from zerolog.methods import MethodKind, method_spec


@dataclass
class LoadedDetector:
    """A detector ready to score new raw lines of its system."""

    system: str
    method: str
    kind: str  # MethodKind value
    source: str  # where it came from, in words (summary and output metadata)
    context: SystemContext
    known: KnownTemplates
    scorer: Scorer
    threshold: Threshold

    @property
    def rule(self) -> SessionRule:
        """The system's session rule (a loaded detector always has one: ``_parser_of`` refuses a bundle without)."""
        if self.context.session is None:
            raise DataError(f"system {self.system}: dataset {self.context.dataset} has no session rule")
        return self.context.session


def _parser_of(bundle: DetectorBundle, where: str) -> KnownTemplates:
    if bundle.known is None:
        raise DataError(f"{where}: no known templates (a bundle of an older zerolog: rerun dvc repro)")
    if bundle.context.session is None:
        raise DataError(
            f"{where}: dataset {bundle.context.dataset} has no session rule for raw lines (set "
            f"datasets.{bundle.context.dataset}.session, e.g. {{rule: key, key_regex: ...}})"
        )
    return bundle.known


def check_system(detector_system: str, system: str, source: str) -> None:
    """A detector applies to the system it was trained for only."""
    if detector_system != system:
        raise ConfigError(f"{source} was trained for system {detector_system!r}, not {system!r} (--system)")


def from_bundle(bundle: DetectorBundle, system: str, top: int, source: str) -> LoadedDetector:
    """The persisted (recommended) detector of ``bundle``; refused for another system."""
    check_system(bundle.context.system, system, source)
    known = _parser_of(bundle, str(bundle.folder))
    return LoadedDetector(system, bundle.method, str(method_spec(bundle.method).kind), source, bundle.context, known,
                          PcaScorer(bundle, top), bundle.threshold)  # fmt: skip


def transfer_threshold(params: Params, paths: ArtifactPaths, pair: str, method: str, seed: int) -> Threshold:
    """The evaluate stage's headline threshold rule of ``method`` on ``pair``, applied by the evaluate stage's own
    functions to the method's score file of model ``seed`` (target train scores, source validation labels)."""
    from zerolog.evaluation.evaluate import EvaluationSettings, read_pi_hat, rule_inputs
    from zerolog.evaluation.thresholds import choose_threshold

    pair_config = params.pairs[pair]
    settings = EvaluationSettings(pair, pair_config, params.evaluate, params.seed, list(params.seeds))
    rule = settings.headline_rule(method)
    systems = {name: load_tensors(paths.tensors(name)) for name in [*pair_config.sources, pair_config.target]}
    path = paths.score_file(method, pair, pair_config.target, seed)
    frame, metadata = read_scores(path)
    pi_hat = read_pi_hat(settings, paths, pair_config.target, seed)  # the recommended detector's, label-free
    inputs, _ = rule_inputs(frame, metadata, path, False, systems[pair_config.target], systems, pi_hat)
    chosen = choose_threshold(rule, inputs, params.evaluate.contamination_prior, params.seed, False)
    if chosen.oracle:
        raise ConfigError(f"evaluate.primary_threshold_rule: {rule} reads target labels; detect uses label-free rules")
    described = f"evaluate's headline rule {rule} on {path}"
    return Threshold(chosen.value, described if chosen.applicable else f"{described}: {chosen.reason}", None)


def _transfer(params: Params, paths: ArtifactPaths, pair: str, method: str, bundle: DetectorBundle,
              top: int) -> tuple[Scorer, Threshold, str]:  # fmt: skip
    from zerolog.detection.gru import gru_parts

    target = params.pairs[pair].target
    seed = params.seeds[0]
    tensors = load_tensors(paths.tensors(target))
    vocabulary = list(tensors.meta["templates_list"])
    if vocabulary != bundle.templates:
        raise DataError(f"{bundle.folder}: its template table differs from {paths.tensors(target)} (rerun dvc repro)")
    checkpoint = paths.checkpoint(pair, method, seed)
    parts = gru_parts(checkpoint, vocabulary, np.asarray(tensors.vectors), int(tensors.meta["max_len"]),
                      paths.template_vectors(), params.embed, params.train.score_batch_size)  # fmt: skip
    source = f"pair {pair}, method {method} (seed {seed}: {checkpoint})"
    return GruScorer(parts, top), transfer_threshold(params, paths, pair, method, seed), source


def from_pipeline(params: Params, system: str, pair: str, method: str, top: int) -> LoadedDetector:
    """``--pair P --method M`` from the last ``dvc repro`` (module docstring)."""
    if system not in params.systems:
        raise ConfigError(f"systems.{system}: unknown system (--system; known: {', '.join(params.systems)})")
    if pair not in params.pairs:
        raise ConfigError(f"pairs.{pair}: unknown pair (--pair; known: {', '.join(params.pairs)})")
    spec = method_spec(method, "--method")
    target = params.pairs[pair].target
    check_system(target, system, f"pair {pair} (target {target})")
    if spec.oracle:
        raise ConfigError(
            f"--method {method}: an ORACLE reads the target's labels; detect applies zero-label detectors"
        )
    paths = ArtifactPaths(params.paths)
    bundle = read_bundle(paths.detector(system))
    if spec.kind is not MethodKind.TRANSFER:
        if method != bundle.method:
            raise ConfigError(
                f"--method {method}: the persisted detector of {system} is {bundle.method} "
                f"(evaluate.recommended); transfer methods: zerolog, source_only, dann, meta"
            )
        return from_bundle(bundle, system, top, f"pair {pair}, method {method} ({paths.detector(system)})")
    known = _parser_of(bundle, str(bundle.folder))
    scorer, threshold, source = _transfer(params, paths, pair, method, bundle, top)
    return LoadedDetector(system, method, str(spec.kind), source, bundle.context, known, scorer, threshold)


def describe(detector: LoadedDetector) -> dict[str, Any]:
    """The detector in a few JSON-safe fields (output metadata, summary)."""
    return {"system": detector.system, "method": detector.method, "kind": detector.kind, "source": detector.source,
            "threshold": detector.threshold.value, "threshold_rule": detector.threshold.rule,
            "pi_hat": detector.threshold.pi_hat}  # fmt: skip


__all__ = ["LoadedDetector", "check_system", "describe", "from_bundle", "from_pipeline", "transfer_threshold"]
