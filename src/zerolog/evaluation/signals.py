"""Stage diagnose: which anomaly signals hold in every labeled system, and which turn over between systems.

Why this exists: a zero-label method can only carry over what is anomalous in the same way in the source and the
target. This stage measures, on each labeled system's VALIDATION split (the test split stays the evaluate stage's
alone), the ROC-AUC of simple per-session signals: label-free novelty (``novelty:*``) and zero-shot severity
(``severity:<anchor>``), and ``probe:<source>``, a linear model over the semantic template vectors (what ZeroLog's
encoder reads, method.md §3) fit on a source's train labels. A signal high in one system and at or below 0.5 in
another means what marks an anomaly there is not what marks it here. Per source → system it also lists the templates
the probe scores highest and lowest, with their share of normal and anomalous validation sessions: where a transfer
goes wrong, template by template.

It reads validation labels of every labeled system: it is an analysis, not a model selection; nothing in
training, thresholds or evaluation reads its output.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from zerolog.artifacts import SPLIT_CODES, ArtifactPaths, SystemTensors, load_tensors
from zerolog.config import DiagnoseConfig, EmbedConfig, Params
from zerolog.errors import DataError
from zerolog.features.embed import embed_texts
from zerolog.io import write_json
from zerolog.runner import Outputs


@dataclass(frozen=True)
class SystemView:
    """One labeled system: template sets per session, vectors, labels and splits (all row-aligned)."""

    system: str
    dataset: str
    template_sets: list[np.ndarray]  # per session: the distinct rows of ``vectors`` it holds (>= 1)
    vectors: np.ndarray  # (templates + 1, dim) float64, row 0 padding
    templates: list[str]  # template text of row i + 1
    labels: np.ndarray  # (sessions,) -1/0/1
    split: np.ndarray  # (sessions,) 0/1/2

    def rows(self, split: str, labeled: bool = True) -> np.ndarray:
        chosen = self.split == SPLIT_CODES[split]
        if labeled:
            chosen &= self.labels >= 0
        return np.flatnonzero(chosen)


def system_view(tensors: SystemTensors, system: str) -> SystemView:
    index, lengths = np.asarray(tensors.index), np.asarray(tensors.lengths)
    sets = [np.unique(index[row, : lengths[row]]) for row in range(index.shape[0])]
    meta = tensors.meta or {}
    return SystemView(
        system=system,
        dataset=str(meta.get("dataset", "")),
        template_sets=sets,
        vectors=np.asarray(tensors.vectors, dtype=np.float64),
        templates=list(meta.get("templates_list", [])),
        labels=np.asarray(tensors.labels, dtype=np.int64),
        split=np.asarray(tensors.split, dtype=np.int64),
    )


# ----------------------------------------------------------------------------- signals


def template_set_novelty(view: SystemView) -> np.ndarray:
    """−log((n_set + 1) / (n_train + 1)): how rare the session's exact template set is among train sessions."""
    train = view.rows("train", labeled=False)
    keys = [tuple(int(value) for value in template_set) for template_set in view.template_sets]
    counts = collections.Counter(keys[row] for row in train)
    return np.array([-np.log((counts[key] + 1) / (train.size + 1)) for key in keys])  # (sessions,)


def rarest_template_novelty(view: SystemView) -> np.ndarray:
    """max over the session's templates of −log((n_t + 1) / (n_train + 2)), n_t = train sessions holding t."""
    train = view.rows("train", labeled=False)
    holding = np.zeros(view.vectors.shape[0], dtype=np.float64)  # (templates + 1,)
    for row in train:
        holding[view.template_sets[row]] += 1
    rarity = -np.log((holding + 1) / (train.size + 2))
    return np.array([rarity[template_set].max() for template_set in view.template_sets])


def severity_similarity(view: SystemView, anchor: np.ndarray) -> np.ndarray:
    """max over the session's templates of cos(template vector, anchor vector): a zero-shot reading of severity."""
    norms = np.linalg.norm(view.vectors, axis=1, keepdims=True)  # (templates + 1, 1)
    unit = view.vectors / np.where(norms > 0, norms, 1.0)
    similarity = unit @ (anchor / max(np.linalg.norm(anchor), 1e-12))  # (templates + 1,)
    return np.array([similarity[template_set].max() for template_set in view.template_sets])


def max_pooled(view: SystemView) -> np.ndarray:
    """(sessions, dim): the element-wise max of the session's template vectors."""
    return np.stack([view.vectors[template_set].max(axis=0) for template_set in view.template_sets])


def fit_probe(source: SystemView, config: DiagnoseConfig, seed: int) -> LogisticRegression:
    """Class-balanced logistic regression on the source's max-pooled train sessions and train labels."""
    train = source.rows("train")
    labels = source.labels[train]
    if np.unique(labels).size < 2:
        raise DataError(f"diagnose: system {source.system} has a single class in its train split; no probe to fit")
    probe = LogisticRegression(C=config.probe_regularization, class_weight="balanced", max_iter=5000, random_state=seed)
    return probe.fit(max_pooled(source)[train], labels)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < labels.size else None


def template_table(source: str, view: SystemView, template_scores: np.ndarray, shown: int) -> list[dict[str, Any]]:
    """Highest and lowest probe scores of the system's templates, with their share of val sessions by label."""
    validation = view.rows("val")
    normal = [view.template_sets[row] for row in validation if view.labels[row] == 0]
    anomalous = [view.template_sets[row] for row in validation if view.labels[row] == 1]

    def share(sessions: list[np.ndarray], template: int) -> float:
        return float(np.mean([template in template_set for template_set in sessions])) if sessions else 0.0

    present = sorted({int(t) for row in validation for t in view.template_sets[row] if t > 0})
    present.sort(key=lambda template: -template_scores[template])
    chosen = present[:shown] + [template for template in present[-shown:] if template not in present[:shown]]
    return [
        {
            "source": source,
            "template": view.templates[template - 1] if template - 1 < len(view.templates) else str(template),
            "probe_score": float(template_scores[template]),
            "val_normal_share": share(normal, template),
            "val_anomalous_share": share(anomalous, template),
        }
        for template in chosen
    ]


def _check_labeled(view: SystemView) -> SystemView:
    validation_labels = view.labels[view.rows("val")]
    if not 0 < validation_labels.sum() < validation_labels.size:
        raise DataError(
            f"diagnose: system {view.system}: its validation split needs both normal and anomalous sessions"
        )
    return view


def _signals(views: dict[str, SystemView], config: DiagnoseConfig, anchors: np.ndarray,
             seed: int) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, list[dict[str, Any]]]]:  # fmt: skip
    """Every signal's score of every session, per system; and the probe's extreme templates per system."""
    signals: dict[str, dict[str, np.ndarray]] = {system: {} for system in views}
    templates: dict[str, list[dict[str, Any]]] = {system: [] for system in views}
    for system, view in views.items():
        signals[system]["novelty:template_set"] = template_set_novelty(view)
        signals[system]["novelty:rarest_template"] = rarest_template_novelty(view)
        for name, anchor in zip(config.severity_anchors, anchors, strict=True):
            signals[system][f"severity:{name.split(':')[0].strip().lower()}"] = severity_similarity(view, anchor)
    for source, source_view in views.items():
        probe = fit_probe(source_view, config, seed)
        for system, view in views.items():
            signals[system][f"probe:{source}"] = probe.decision_function(max_pooled(view))
            if system != source:
                template_scores = probe.decision_function(view.vectors)  # a template alone as a max-pooled session
                templates[system] += template_table(source, view, template_scores, config.templates_shown)
    return signals, templates


@dataclass(frozen=True)
class DiagnoseSection:
    """Stage diagnose's settings: ``diagnose.*``, ``embed.*`` (anchors are embedded like the templates), ``seed``."""

    config: DiagnoseConfig
    embed: EmbedConfig
    seed: int


def diagnose_section(params: Params, _: str) -> DiagnoseSection:
    return DiagnoseSection(params.diagnose, params.embed, params.seed)


def load_diagnose_inputs(section: DiagnoseSection, paths: ArtifactPaths) -> dict[str, SystemView]:
    """Every system of ``diagnose.systems``, checked to hold both classes in its validation split."""
    return {system: _check_labeled(system_view(load_tensors(paths.tensors(system)), system))
            for system in section.config.systems}  # fmt: skip


@dataclass(frozen=True)
class DiagnoseResult:
    """``reports/transfer_signals.json`` (the numbers) and ``reports/transfer_signals.md`` (the report)."""

    results: dict[str, Any]

    def metrics(self) -> dict[str, Any]:
        return self.results

    def write(self, outputs: Outputs) -> None:
        write_json(outputs["numbers"], self.results)
        outputs["markdown"].write_text(signals_markdown(self.results), encoding="utf-8")


def compute_diagnose(section: DiagnoseSection, views: dict[str, SystemView]) -> DiagnoseResult:
    """Measure every signal on every labeled system's validation split."""
    config = section.config
    anchors = embed_texts(list(config.severity_anchors), section.embed).astype(np.float64)  # like the templates
    signals, templates = _signals(views, config, anchors, section.seed)
    results: dict[str, Any] = {"split": "val", "systems": {}}
    for system, view in views.items():
        validation = view.rows("val")
        labels = view.labels[validation]
        results["systems"][system] = {
            "dataset": view.dataset,
            "val_sessions": int(validation.size),
            "val_anomalies": int(labels.sum()),
            "roc_auc": {name: _auc(labels, scores[validation]) for name, scores in signals[system].items()},
            "templates": templates[system],
        }
        aucs = results["systems"][system]["roc_auc"].items()
        print(f"{system}: " + ", ".join(f"{name} {value:.2f}" for name, value in aucs if value is not None))
    return DiagnoseResult(results)


# ----------------------------------------------------------------------------- report


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def signals_markdown(results: dict[str, Any]) -> str:
    systems = list(results["systems"])
    names = list(dict.fromkeys(name for entry in results["systems"].values() for name in entry["roc_auc"]))
    lines = [
        "# Which anomaly signals carry over between systems",
        "",
        "ROC-AUC of simple per-session signals on each labeled system's **validation** split (the test split is read "
        "by the evaluate stage only). 0.5 is chance; below 0.5 the signal ranks normal sessions above anomalies. "
        "Generated by `dvc repro diagnose` (src/zerolog/evaluation/signals.py); nothing in training or evaluation "
        "reads it.",
        "",
        "| signal | "
        + " | ".join(
            f"{system} ({entry['dataset']}: {entry['val_sessions']} val, {entry['val_anomalies']} anomalous)"
            for system, entry in results["systems"].items()
        )
        + " | lowest |",
        "|---|" + "---|" * (len(systems) + 1),
    ]
    for name in names:
        values = [results["systems"][system]["roc_auc"].get(name) for system in systems]
        known = [value for value in values if value is not None]
        lines.append(
            f"| `{name}` | "
            + " | ".join(_cell(value) for value in values)
            + f" | {_cell(min(known) if known else None)} |"
        )
    lines += [
        "",
        "`novelty:*` read only the system's own unlabeled train sessions; `severity:*` compare template vectors with "
        "the RFC 5424 severity descriptions (zero-shot); `probe:<source>` is a linear model fit on `<source>`'s train "
        "labels (in its own row it is the source's held-out fit, elsewhere a zero-label transfer). A signal that is "
        "high in one column and low in another cannot carry a zero-label transfer between those systems.",
        "",
        "## What each source's probe scores highest and lowest in the other system",
        "",
        "| system | probe fit on | template | probe score | share of val normal sessions "
        "| share of val anomalous sessions |",
        "|---|---|---|---|---|---|",
    ]
    for system, entry in results["systems"].items():
        for row in entry["templates"]:
            template = row["template"].replace("|", "\\|")
            lines.append(
                f"| {system} | {row['source']} | `{template}` | {row['probe_score']:.2f} | "
                f"{row['val_normal_share']:.3f} | {row['val_anomalous_share']:.3f} |"
            )
    return "\n".join(lines) + "\n"
