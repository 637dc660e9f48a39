"""Ablation of ``zerolog_adapt`` on every pair and model seed (issue 10): ``make ablation``.

Rows (one configuration for every pair; the params.yaml ``train`` section, switches flipped one at a time):

| row | what runs |
|---|---|
| ``zerolog`` | the paper's method (``train.epochs`` epochs) |
| ``zerolog_adapt`` | zerolog + importance-weighted domain loss + self-training rounds (train.adapt as in params) |
| ``adapt_no_weighting`` | ``train.adapt.domain_weighting: none`` |
| ``adapt_no_self_training`` | ``train.adapt.self_training.rounds: 0`` |
| ``detector`` | the target-only PCA SPE + mixture cut (the recommended detector; deterministic) |

Two training runs per pair and seed give the four GRU rows, exactly: the *importance* arm trains ``zerolog_adapt``
with rounds 0 (= ``adapt_no_self_training``), then resumes from its last checkpoint with the rounds (=
``zerolog_adapt``); the *plain* arm trains ``zerolog`` (= ``zerolog``), then resumes as ``zerolog_adapt`` with
weighting none (= ``adapt_no_weighting``). That a resumed run equals an uninterrupted one, and that the rounds start
from zerolog's epochs untouched, is tested (tests/training/test_adapt.py); it halves the cost.

Threshold rules: every GRU row is cut at the top π̂ share of its own target-TRAIN scores (the rule of zerolog_adapt,
declared before any test split was read); ``zerolog`` also at ``source_val`` (today's headline rule). The detector
uses its own mixture cut. Target labels are read here only, after training, for the metrics: VALIDATION (the split
development decisions were made on) and TEST. ``--split val`` prints validation only (development runs).

Outputs: ``reports/ablation.md`` and ``metrics/ablation.json`` (every per-seed number), runs cached in
``data/ablation/<pair>/<arm>/seed-<s>/`` (a rerun trains only what is missing or whose inputs changed). Timings: the
runs of one invocation share the machine, so compare the adapt / zerolog ratio, not seconds across invocations.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from zerolog.artifacts import SPLIT_CODES, ArtifactPaths, load_tensors
from zerolog.config import ParallelConfig, Params, TrainConfig, as_dict
from zerolog.config_loader import load_params, parse_params, read_yaml
from zerolog.errors import ZerologError
from zerolog.features.target_detector import TargetDetection
from zerolog.io import atomic_path, read_json, write_json, write_text
from zerolog.metrics import precision_recall_f1, ranking_metrics
from zerolog.parallel import map_ordered, open_pool
from zerolog.training.adapt import pseudo_labels, top_share_threshold
from zerolog.training.loop import train
from zerolog.training.pipeline import scores_of, target_detection

ARMS = ("importance", "plain")
ROWS = {  # row -> (arm, phase): base = the first train.epochs epochs, final = after the self-training rounds
    "zerolog": ("plain", "base"),
    "zerolog_adapt": ("importance", "final"),
    "adapt_no_weighting": ("plain", "final"),
    "adapt_no_self_training": ("importance", "base"),
}
CACHE = Path("data/ablation")  # default cache of the arm runs (gitignored with data/)


@dataclass(frozen=True)
class ArmJob:
    """Both phases of one arm for one pair and model seed (plain values: a worker process receives it)."""

    config: TrainConfig
    arm: str
    pair: str
    source_directories: list[str]
    target_directory: str
    seed: int
    folder: str
    detection: TargetDetection
    base_digest: str  # what the base phase depends on (not the self-training settings)
    final_digest: str  # the base digest and the whole train section

    @property
    def base_folder(self) -> Path:
        return Path(self.folder) / "base"

    @property
    def final_folder(self) -> Path:
        """One folder per final configuration: self-training variants share the base run."""
        return Path(self.folder) / f"final-{self.final_digest[:12]}"

    def phase_folder(self, phase: str) -> Path:
        return self.base_folder if phase == "base" else self.final_folder


def _arm_configs(config: TrainConfig, arm: str) -> tuple[TrainConfig, TrainConfig, str]:
    """(base config, final config, base method) of an arm."""
    weighting: Literal["none", "importance"] = "importance" if arm == "importance" else "none"
    final = dataclasses.replace(config, adapt=dataclasses.replace(config.adapt, domain_weighting=weighting))
    no_rounds = dataclasses.replace(final.adapt.self_training, rounds=0)
    base = dataclasses.replace(final, adapt=dataclasses.replace(final.adapt, self_training=no_rounds))
    return base, final, "zerolog_adapt" if arm == "importance" else "zerolog"


def _done(folder: Path, digest: str) -> bool:
    record = folder / "run.json"
    return record.is_file() and read_json(record).get("digest") == digest


def _phase(folder: Path, digest: str, config: TrainConfig, method: str, job: ArmJob, start_from: Path | None,
           keep_checkpoint: bool) -> dict[str, Any]:  # fmt: skip
    """Train one phase (resuming its own interrupted run when the digest matches), score it, record it."""
    sources = [load_tensors(directory) for directory in job.source_directories]
    target = dataclasses.replace(load_tensors(job.target_directory), labels=None)  # no target label in training
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint, marker = folder / "checkpoint.pt", folder / "digest"
    interrupted = checkpoint.is_file() and marker.is_file() and marker.read_text() == digest
    if not interrupted:
        marker.write_text(digest)
    started = time.perf_counter()
    result = train(config, sources, target, method, job.seed, progress=False, checkpoint_path=checkpoint,
                   resume_from=checkpoint if interrupted else start_from, detection=job.detection)  # fmt: skip
    frame = scores_of(result.model, sources, target, config.score_batch_size)
    with atomic_path(folder / "scores.parquet") as temporary:
        frame.to_parquet(temporary, index=False)
    record = {"digest": digest, "pair": job.pair, "arm": job.arm, "seed": job.seed, "method": method,
              "seconds": time.perf_counter() - started, "resumed_interrupted_run": interrupted,
              "threshold_source_val": result.threshold_source_val, "domain_weights": result.domain_weights,
              "self_training": result.self_training}  # fmt: skip
    write_json(folder / "run.json", record)
    if not keep_checkpoint:
        checkpoint.unlink()
    return record


def run_arm(job: ArmJob) -> dict[str, Any]:
    """The arm's base phase (``train.epochs`` epochs; its checkpoint is kept), then the rounds resumed from it."""
    base_config, final_config, base_method = _arm_configs(job.config, job.arm)
    if not _done(job.base_folder, job.base_digest):
        _phase(job.base_folder, job.base_digest, base_config, base_method, job, None, keep_checkpoint=True)
    return _phase(job.final_folder, job.final_digest, final_config, "zerolog_adapt", job,
                  job.base_folder / "checkpoint.pt", keep_checkpoint=False)  # fmt: skip


# ----------------------------------------------------------------------------- jobs


def _digest(parts: list[Any], inputs: list[Path]) -> str:
    digest = hashlib.md5(json.dumps(parts, sort_keys=True).encode())
    for path in sorted(inputs):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _digests(config: TrainConfig, arm: str, pair: str, seed: int, detection: TargetDetection,
             inputs: list[Path]) -> tuple[str, str]:  # fmt: skip
    """(base, final) digests: the train section (thread counts aside), arm, pair, seed, π̂ and the input bytes; the
    plain arm's base is zerolog, which reads no train.adapt key and no π̂."""
    base_config, final_config, base_method = _arm_configs(config, arm)
    plain = lambda settings: as_dict(dataclasses.replace(settings, torch_threads=1, method_workers=1))  # noqa: E731
    base_settings = plain(base_config)
    base_settings["adapt"].pop("self_training")  # rounds 0 in the base phase: no self-training key is read
    if arm == "plain":
        base_settings.pop("adapt")
    base = _digest([base_settings, base_method, pair, seed, detection.pi_hat if arm == "importance" else None], inputs)
    return base, _digest([base, plain(final_config), detection.pi_hat], [])


def _jobs(params: Params, pairs: list[str], seeds: list[int], threads: int,
          cache: Path) -> tuple[list[ArmJob], dict[str, TargetDetection]]:  # fmt: skip
    paths = ArtifactPaths(params.paths)
    config = dataclasses.replace(params.train, torch_threads=threads)
    detections: dict[str, TargetDetection] = {}
    detector = params.evaluate.detectors.pca  # the baselines stage's pca_mixture settings
    jobs = []
    for seed in seeds:  # seed-major: a partial run already covers every pair
        for pair in pairs:
            pair_config = params.pairs[pair]
            target_directory = paths.tensors(pair_config.target)
            if pair_config.target not in detections:
                target = dataclasses.replace(load_tensors(target_directory), labels=None)
                detection, reason = target_detection(target, detector.variance, detector.weighting, params.seed)
                if detection is None:
                    raise ZerologError(f"ablation: {reason}")
                detections[pair_config.target] = detection
            directories = [paths.tensors(source) for source in pair_config.sources] + [target_directory]
            inputs = [directory / f"{name}.npy" for directory in directories
                      for name in ("index", "lengths", "split", "vectors")]  # fmt: skip
            inputs += [paths.tensors(source) / "labels.npy" for source in pair_config.sources]
            detection = detections[pair_config.target]
            for arm in ARMS:
                base_digest, final_digest = _digests(config, arm, pair, seed, detection, inputs)
                jobs.append(ArmJob(config, arm, pair, [str(paths.tensors(source)) for source in pair_config.sources],
                                   str(target_directory), seed, str(cache / pair / arm / f"seed-{seed}"), detection,
                                   base_digest, final_digest))  # fmt: skip
    return jobs, detections


def _cached(job: ArmJob) -> bool:
    return _done(job.base_folder, job.base_digest) and _done(job.final_folder, job.final_digest)


def run_jobs(jobs: list[ArmJob], workers: int) -> None:
    """Every job not cached, in ``workers`` spawned processes (zerolog.parallel; in turn here with one); a line per
    finished arm."""
    missing = [job for job in jobs if not _cached(job)]
    print(f"ablation: {len(jobs) - len(missing)} of {len(jobs)} arm runs cached, {len(missing)} to train", flush=True)
    with open_pool(ParallelConfig("processes", workers, None), "ablation --workers") as pool:
        records = map_ordered(pool, run_arm, [(job,) for job in missing], ahead=len(missing))
        for done, record in enumerate(records, 1):
            print(f"[{done}/{len(missing)}] {record['pair']} {record['arm']} seed {record['seed']}: rounds "
                  f"{record['self_training']}", flush=True)  # fmt: skip


# ----------------------------------------------------------------------------- metrics (target labels read here only)


def _target_frame(folder: Path) -> pd.DataFrame:
    frame = pd.read_parquet(folder / "scores.parquet")
    return frame[frame["domain"] == "target"].set_index("row")


def _split_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float | None) -> dict[str, Any]:
    """F1 (with precision, recall, flagged share) at ``threshold``, and PR-AUC / ROC-AUC, on one labeled split."""
    entry: dict[str, Any] = dict(ranking_metrics(labels, scores))
    if threshold is None:
        return {**entry, "f1": None, "precision": None, "recall": None, "flagged": None}
    predicted = scores >= threshold
    precision, recall, f1 = precision_recall_f1(labels, predicted)
    return {**entry, "f1": f1, "precision": precision, "recall": recall, "flagged": float(np.mean(predicted))}


def _labeled_rows(labels: np.ndarray, split: np.ndarray, name: str) -> np.ndarray:
    return np.flatnonzero((split == SPLIT_CODES[name]) & (labels >= 0))


def _row_entry(frame: pd.DataFrame, labels: np.ndarray, split: np.ndarray, pi_hat: float,
               source_val: float | None, splits: list[str]) -> dict[str, Any]:  # fmt: skip
    """One GRU row of one pair and seed: every split's metrics at the π̂ rule (and at source_val where given)."""
    train_scores = frame.loc[np.flatnonzero(split == SPLIT_CODES["train"]), "score"].to_numpy()
    cut = top_share_threshold(train_scores, pi_hat)
    entry: dict[str, Any] = {"threshold_pi_hat": cut}
    for name in splits:
        rows = _labeled_rows(labels, split, name)
        scores = frame.loc[rows, "score"].to_numpy()
        entry[name] = _split_metrics(labels[rows], scores, cut)
        if source_val is not None:
            entry[name]["source_val"] = _split_metrics(labels[rows], scores, source_val)
    return entry


def _round_one_purity(frame: pd.DataFrame, labels: np.ndarray, split: np.ndarray, detection: TargetDetection,
                      config: TrainConfig) -> dict[str, Any]:  # fmt: skip
    """Round 1's pseudo-labels (the rule on the base model's scores, as the trainer computes them) against the
    target's true train labels: an analysis after training, never an input."""
    rows = np.flatnonzero(split == SPLIT_CODES["train"])
    rule = config.adapt.self_training
    pseudo = pseudo_labels(frame.loc[rows, "score"].to_numpy(), detection.scores[rows], detection.threshold,
                           detection.pi_hat, rule.normal_share, rule.rule)  # fmt: skip
    truth = labels[rows]
    anomalies, normals = pseudo == 1, pseudo == 0
    return {"anomalies": int(anomalies.sum()), "normals": int(normals.sum()),
            "anomaly_precision": float(np.mean(truth[anomalies] == 1)) if anomalies.any() else None,
            "normal_precision": float(np.mean(truth[normals] == 0)) if normals.any() else None}  # fmt: skip


def evaluate_pair(params: Params, pair: str, jobs: dict[tuple[str, int], ArmJob], seeds: list[int],
                  detection: TargetDetection, splits: list[str]) -> dict[str, Any]:  # fmt: skip
    """Every row of one pair: per seed, per split; the detector once (it is deterministic). ``jobs``: (arm, seed)."""
    target = load_tensors(ArtifactPaths(params.paths).tensors(params.pairs[pair].target))
    assert target.labels is not None
    labels, split = np.asarray(target.labels).astype(np.int64), np.asarray(target.split)
    result: dict[str, Any] = {"rows": {row: {"seeds": {}} for row in ROWS}, "seconds": {}, "self_training": {}}
    for seed in seeds:
        records = {(arm, phase): read_json(jobs[arm, seed].phase_folder(phase) / "run.json")
                   for arm in ARMS for phase in ("base", "final")}  # fmt: skip
        for row, (arm, phase) in ROWS.items():
            frame = _target_frame(jobs[arm, seed].phase_folder(phase))
            source_val = records[arm, phase]["threshold_source_val"] if row == "zerolog" else None
            entry = _row_entry(frame, labels, split, detection.pi_hat, source_val, splits)
            result["rows"][row]["seeds"][str(seed)] = entry
        result["seconds"][str(seed)] = {
            "zerolog": records["plain", "base"]["seconds"],
            "zerolog_adapt": records["importance", "base"]["seconds"] + records["importance", "final"]["seconds"],
            "resumed": any(record["resumed_interrupted_run"] for record in records.values()),
        }
        base = _target_frame(jobs["importance", seed].base_folder)
        result["self_training"][str(seed)] = {
            "rounds": records["importance", "final"]["self_training"],
            "domain_weights": records["importance", "final"]["domain_weights"],
            "round_one_purity": _round_one_purity(base, labels, split, detection, params.train),
        }  # fmt: skip
    rows = {name: _labeled_rows(labels, split, name) for name in ("train", "val", "test")}
    result["rows"]["detector"] = {name: _split_metrics(labels[rows[name]], detection.scores[rows[name]],
                                                       detection.threshold) for name in splits}  # fmt: skip
    result["pi_hat"] = detection.pi_hat
    result["true_share"] = {name: float(np.mean(labels[chosen] == 1)) for name, chosen in rows.items()}
    return result


# ----------------------------------------------------------------------------- the report


def _values(pair_result: dict[str, Any], row: str, split: str, key: str, rule: str | None = None) -> list[float]:
    """Per-seed values of one metric (the detector's single value for every seed)."""
    entry = pair_result["rows"][row]
    if "seeds" not in entry:
        value = entry[split][key]
        return [] if value is None else [value]
    found = []
    for seed_entry in entry["seeds"].values():
        metrics = seed_entry[split] if rule is None else seed_entry[split][rule]
        if metrics[key] is not None:
            found.append(metrics[key])
    return found


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` over seeds (population sd, as the evaluate stage), or ``–``."""
    if not values:
        return "–"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


TABLE_ROWS = [  # (label, row, rule)
    ("`zerolog_adapt` (π̂ cut)", "zerolog_adapt", None),
    ("− importance weighting", "adapt_no_weighting", None),
    ("− self-training", "adapt_no_self_training", None),
    ("− both = `zerolog` (π̂ cut)", "zerolog", None),
    ("`zerolog` (source_val cut, today's headline)", "zerolog", "source_val"),
    ("target-only PCA + mixture (recommended detector)", "detector", None),
]


def _metric_table(results: dict[str, Any], split: str, key: str) -> list[str]:
    pairs = list(results)
    lines = ["| row | " + " | ".join(pairs) + " |", "|---|" + "---|" * len(pairs)]
    for label, row, rule in TABLE_ROWS:
        if rule is not None and key != "f1":
            continue  # a ranking metric does not depend on the cut
        cells = [mean_sd(_values(results[pair], row, split, key, rule)) for pair in pairs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _share_table(results: dict[str, Any]) -> list[str]:
    lines = ["| target | π̂ (detector's flagged train share) | true share train / val / test |", "|---|---|---|"]
    seen = set()
    for pair, result in results.items():
        target = pair.split("-")[-1]
        if target in seen:
            continue
        seen.add(target)
        shares = result["true_share"]
        lines.append(f"| {target} | {result['pi_hat']:.3f} | {shares['train']:.3f} / {shares['val']:.3f} / "
                     f"{shares['test']:.3f} |")  # fmt: skip
    return lines


def _self_training_table(results: dict[str, Any]) -> list[str]:
    lines = ["| pair | IWDAN w_0 / w_1 | round 1: agreed anomalies (precision) / normals (precision) | rounds with the "
             "pseudo task |", "|---|---|---|---|"]  # fmt: skip
    for pair, result in results.items():
        cells = []
        for entry in result["self_training"].values():
            purity = entry["round_one_purity"]
            precision = "–" if purity["anomaly_precision"] is None else f"{purity['anomaly_precision']:.2f}"
            normal_precision = "–" if purity["normal_precision"] is None else f"{purity['normal_precision']:.3f}"
            used = sum(1 for round_entry in entry["rounds"] if round_entry["used"])
            cells.append((f"{purity['anomalies']} ({precision}) / {purity['normals']} ({normal_precision})",
                          f"{used}/{len(entry['rounds'])}", entry["domain_weights"]))  # fmt: skip
        weights = cells[0][2]
        weight_text = "–" if weights is None else f"{weights[0]:.3f} / {weights[1]:.3f}"
        lines.append(f"| {pair} | {weight_text} | " + "; ".join(cell[0] for cell in cells) + " | "
                     + ", ".join(cell[1] for cell in cells) + " |")  # fmt: skip
    return lines


def _cost_table(results: dict[str, Any]) -> list[str]:
    lines = ["| pair | zerolog s / run | zerolog_adapt s / run | ratio |", "|---|---|---|---|"]
    for pair, result in results.items():
        measured = [entry for entry in result["seconds"].values() if not entry["resumed"]]  # whole runs only
        if not measured:
            lines.append(f"| {pair} | – | – | – |")
            continue
        zerolog = [entry["zerolog"] for entry in measured]
        adapt = [entry["zerolog_adapt"] for entry in measured]
        ratio = np.mean(adapt) / np.mean(zerolog)
        lines.append(f"| {pair} | {np.mean(zerolog):.0f} | {np.mean(adapt):.0f} | {ratio:.2f} |")
    return lines


def _bar_table(results: dict[str, Any]) -> list[str]:
    lines = ["| pair | zerolog_adapt TEST F1 | recommended detector TEST F1 | goal 0.80 | above the detector |",
             "|---|---|---|---|---|"]  # fmt: skip
    for pair, result in results.items():
        adapt = np.mean(_values(result, "zerolog_adapt", "test", "f1"))
        detector = _values(result, "detector", "test", "f1")[0]
        lines.append(f"| {pair} | {adapt:.3f} | {detector:.3f} | {'yes' if adapt >= 0.8 else 'no'} | "
                     f"{'yes' if adapt > detector else 'no'} |")  # fmt: skip
    return lines


def coverage(pairs: list[str], seeds: list[int], all_pairs: list[str], all_seeds: list[int]) -> str:
    """What ran, in words: every pair and seed of params, or which subset (a small run must not read as the full
    one)."""
    ran = f"pairs {', '.join(pairs)} × model seeds {seeds}"
    if sorted(pairs) == sorted(all_pairs) and sorted(seeds) == sorted(all_seeds):
        return f"every pair of params.yaml × every model seed ({ran})"
    return (
        f"**PARTIAL RUN**: {ran} only, {len(pairs)} of the {len(all_pairs)} pairs and {len(seeds)} of the "
        f"{len(all_seeds)} model seeds of params.yaml; the other pairs and seeds were not run"
    )


def report(results: dict[str, Any], seeds: list[int], splits: list[str], seconds: float, workers: int,
           ran: str) -> str:  # fmt: skip
    """reports/ablation.md: the tables of every split computed, π̂, self-training, cost and the bar. ``ran``:
    :func:`coverage`."""
    lines = ["# Ablation of `zerolog_adapt` (issue 10)", "",
             f"Generated by `make ablation` (`python -m zerolog.ablation`): {ran}; the "
             "params.yaml `train` section with one switch flipped per row; TEST read once, after the configuration "
             "was fixed on VALIDATION. GRU rows are cut at the top π̂ share of their own target-train scores; "
             "`zerolog` also at `source_val`. The detector row is deterministic (sd 0). Mean ± sd over seeds "
             "(population sd). Method and protocol: `src/zerolog/ablation.py`; what was tried: "
             "`docs/adapt.md`.", ""]  # fmt: skip
    for split in reversed(splits):
        for key, name in (("f1", "F1"), ("pr_auc", "PR-AUC"), ("roc_auc", "ROC-AUC")):
            lines += [f"## {split.upper()} {name}", "", *_metric_table(results, split, key), ""]
    lines += ["## π̂ against the true anomaly share", "", *_share_table(results), ""]
    lines += ["## Importance weights and self-training (per seed; precision against the target's train labels, read "
              "after training)", "", *_self_training_table(results), ""]  # fmt: skip
    lines += [f"## Cost per pair and seed ({workers} runs side by side on this machine, 1 torch thread each; "
              f"whole invocation {seconds:.0f} s of training and scoring)", "", *_cost_table(results), ""]  # fmt: skip
    if "test" in splits:
        lines += ["## The bar (TEST F1, mean over seeds)", "", *_bar_table(results), ""]
    return "\n".join(lines)


def run_ablation(params: Params, pairs: list[str], seeds: list[int], workers: int, splits: list[str],
                 cache: Path = CACHE) -> tuple[dict[str, Any], str]:  # fmt: skip
    """Train what the cache lacks, then evaluate every pair: (results per pair, the report's markdown)."""
    jobs, detections = _jobs(params, pairs, seeds, max(1, params.train.torch_threads // workers), cache)
    started = time.perf_counter()
    run_jobs(jobs, workers)
    seconds = time.perf_counter() - started
    by_pair: dict[str, dict[tuple[str, int], ArmJob]] = {}
    for job in jobs:
        by_pair.setdefault(job.pair, {})[job.arm, job.seed] = job
    results = {pair: evaluate_pair(params, pair, by_pair[pair], seeds, detections[params.pairs[pair].target], splits)
               for pair in pairs}  # fmt: skip
    ran = coverage(pairs, seeds, list(params.pairs), list(params.seeds))
    return results, report(results, seeds, splits, seconds, workers, ran)


def _params(overrides: list[str]) -> Params:
    """params.yaml, with ``key=value`` overrides (YAML values) for development runs."""
    if not overrides:
        return load_params()
    raw = read_yaml(Path("params.yaml").read_text(encoding="utf-8"))
    for override in overrides:
        dotted, _, value = override.partition("=")
        node = raw
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        if last not in node:
            raise ZerologError(f"--set {override}: params.yaml has no key {dotted}")
        node[last] = read_yaml(value)
    return parse_params(raw, "params.yaml (with --set)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ablation of zerolog_adapt on every pair and seed")
    parser.add_argument(
        "--split",
        choices=["val", "all"],
        default="all",
        help="val: development run, print validation tables only (nothing written but the cache)",
    )
    parser.add_argument("--seeds", type=int, nargs="*", help="model seeds (default: params seeds)")
    parser.add_argument("--pairs", nargs="*", help="pairs (default: every pair of params)")
    parser.add_argument("--workers", type=int, help="arm runs side by side (default: train.method_workers)")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="development only (with --split val): params overrides, e.g. train.adapt.self_training.rule=detector",
    )
    arguments = parser.parse_args(argv)
    if arguments.set and arguments.split != "val":
        parser.error("--set is for development runs: use it with --split val (the committed report uses params.yaml)")
    try:
        params = _params(arguments.set)
        seeds = arguments.seeds or list(params.seeds)
        pairs = arguments.pairs or list(params.pairs)
        workers = arguments.workers or params.train.method_workers
        splits = ["val"] if arguments.split == "val" else ["val", "test"]
        results, text = run_ablation(params, pairs, seeds, workers, splits)
    except ZerologError as error:
        sys.exit(f"error: {error}")
    if arguments.split == "val":
        if arguments.set:  # the report's text names params.yaml's train section: say what differed
            print(f"DEVELOPMENT RUN with --set {' '.join(arguments.set)}: not the params.yaml configuration")
        print(text)
        return
    paths = ArtifactPaths(params.paths)
    write_text(paths.report("ablation.md"), text + "\n")
    write_json(paths.metrics_file("ablation"), {"seeds": seeds, "rows": list(ROWS), "pairs": results,
                                                "complete": sorted(pairs) == sorted(params.pairs)
                                                and sorted(seeds) == sorted(params.seeds)})  # fmt: skip
    print(text)


if __name__ == "__main__":
    main()
