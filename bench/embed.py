"""Benchmark of the embed stage's sentence encoder: templates/s of one-text-at-a-time encoding (the encoding before
SENTENCE_ENCODING_VERSION 3, kept here as the reference) against ``embed_texts_sentence`` on the same texts, in one run.

The texts are the realistic ones: every template of the bundled Loghub samples' ``data/bundled/*/*templates*.csv``
(HDFS, BGL, OpenStack), cleaned by ``clean_template`` and deduplicated, as the embed stage sees them. The two encoders
run alternately ``--repeats`` times (the machine is shared: interleaving exposes both to the same load), after one
warm-up call of each; reported: the median templates/s of each, their ratio, the new encoder with each of the
``--threads`` values of SENTENCE_TORCH_THREADS, whether the new vectors equal the old ones bit for bit (else the
largest absolute difference) and whether they are the same at every thread count. The report goes to stdout and
``--output`` (bench/embed_results.md) with the command, the machine (cores, load) and the date.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]


def bundled_texts(root: Path) -> list[str]:
    """The distinct cleaned templates of every ``<root>/*/*templates*.csv`` (column ``EventTemplate``), sorted."""
    from zerolog.features.embed import clean_template

    texts: set[str] = set()
    for path in sorted(root.glob("*/*templates*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            texts.update(clean_template(row["EventTemplate"]) for row in csv.DictReader(handle))
    return sorted(texts)


def encode_one_at_a_time(model, texts: list[str]) -> np.ndarray:
    """The reference (encoding version 2): each text alone through ``SentenceTransformer.encode``. (texts, dim)."""
    from zerolog.features.embed import _unit_rows

    vectors = [
        model.encode([text], convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)[0]
        for text in texts
    ]
    return _unit_rows(np.stack(vectors).astype(np.float32))


def timed(function, *arguments) -> tuple[np.ndarray, float]:
    """(result, wall seconds) of one call."""
    started = time.perf_counter()
    result = function(*arguments)
    return result, time.perf_counter() - started


def measure(texts: list[str], repeats: int, threads: list[int], torch_threads: int) -> dict[str, object]:
    """Templates/s of the old encoder (with ``torch_threads`` threads, 0: torch's default) and the new one (with
    SENTENCE_TORCH_THREADS), alternating, and of the new one per SENTENCE_TORCH_THREADS value in ``threads``."""
    import torch

    from zerolog.config import EmbedConfig
    from zerolog.features import embed
    from zerolog.features.embed import PACKAGED_MODEL, embed_texts_sentence, resolve_sentence_model
    from zerolog.features.embed import _load_sentence_model as load_sentence_model

    config = EmbedConfig(method="sentence", model=PACKAGED_MODEL, hashing_dimensions=1, hashing_ngram_range=[3, 5])
    model = load_sentence_model(resolve_sentence_model(PACKAGED_MODEL))
    if torch_threads:
        torch.set_num_threads(torch_threads)
    default_threads = torch.get_num_threads()
    encoder_threads = embed.SENTENCE_TORCH_THREADS
    encode_one_at_a_time(model, texts[:20])  # warm-up of both paths
    embed_texts_sentence(texts[:20], config)
    old_rates, new_rates = [], []
    for _ in range(repeats):
        old, seconds = timed(encode_one_at_a_time, model, texts)
        old_rates.append(len(texts) / seconds)
        new, seconds = timed(embed_texts_sentence, texts, config)
        new_rates.append(len(texts) / seconds)
    by_threads: dict[int, tuple[float, bool]] = {}
    for count in threads:
        embed.SENTENCE_TORCH_THREADS = count
        vectors, seconds = timed(embed_texts_sentence, texts, config)
        by_threads[count] = (len(texts) / seconds, bool(np.array_equal(vectors, new)))
    embed.SENTENCE_TORCH_THREADS = encoder_threads
    return {"old": statistics.median(old_rates), "new": statistics.median(new_rates), "old_rates": old_rates,
            "new_rates": new_rates, "default_threads": default_threads, "encoder_threads": encoder_threads,
            "by_threads": by_threads,
            "equal_rows": int(sum(np.array_equal(a, b) for a, b in zip(old, new, strict=True))),
            "max_difference": float(np.abs(old - new).max())}  # fmt: skip


def torch_version() -> str:
    import torch

    return str(torch.__version__)


def rates(values: list[float]) -> str:
    """Templates/s of each repeat, one decimal."""
    return ", ".join(f"{value:.1f}" for value in values)


def report(texts: list[str], result: dict, command: str) -> str:
    """The markdown report of one run."""
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    lines = [
        "# Benchmark: sentence embedding, one at a time vs fixed-shape batches",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} cores "
        f"({platform.machine()}, Python {platform.python_version()}, torch {torch_version()}), load average at the end "
        f"{load} (1, 5, 15 min; the machine is shared).",
        "",
        f"Texts: {len(texts)} distinct cleaned templates of data/bundled/*/*templates*.csv. Torch threads: old "
        f"{result['default_threads']}, new {result['encoder_threads']} (SENTENCE_TORCH_THREADS). Repeats alternate "
        "old and new; medians.",
        "",
        "| encoder | templates/s (median) | each repeat |",
        "|---|---:|---|",
        f"| old: one text per `encode` call | {result['old']:.1f} | {rates(result['old_rates'])} |",
        f"| new: `embed_texts_sentence` | {result['new']:.1f} | {rates(result['new_rates'])} |",
        "",
        f"Ratio new / old: **{result['new'] / result['old']:.1f}x**.",
        "",
        f"New vs old vectors: {result['equal_rows']} of {len(texts)} rows bitwise equal, largest absolute difference "
        f"{result['max_difference']:.2e} (hence SENTENCE_ENCODING_VERSION 3).",
        "",
        "| SENTENCE_TORCH_THREADS | new templates/s | vectors bitwise equal to the comparison's |",
        "|---:|---:|---|",
    ]
    lines += [f"| {count} | {rate:.1f} | {equal} |" for count, (rate, equal) in result["by_threads"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bundled = REPOSITORY / "data" / "bundled"
    parser.add_argument("--data", type=Path, default=bundled, help="folder of */*templates*.csv")
    parser.add_argument("--repeats", type=int, default=3, help="alternating old/new timings (median reported)")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2], help="SENTENCE_TORCH_THREADS values to time")
    parser.add_argument("--torch-threads", type=int, default=0, help="threads of the old encoder (0: default)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N texts (0: all)")
    parser.add_argument("--output", type=Path, default=REPOSITORY / "bench" / "embed_results.md")
    arguments = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    texts = bundled_texts(arguments.data)
    texts = texts[: arguments.limit] if arguments.limit else texts
    result = measure(texts, arguments.repeats, arguments.threads, arguments.torch_threads)
    command = "python bench/embed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = report(texts, result, command.strip())
    print(text)
    arguments.output.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
