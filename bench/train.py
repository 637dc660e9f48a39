"""Benchmark of the train stage's hot path: where a zerolog epoch spends its time, and old vs new steps/s.

What one run does (``make bench-train`` = ``python bench/train.py``), every measured run in its own subprocess:

1. Old vs new: a ``git worktree`` of ``--base`` (the code before the change) and this checkout each train the same
   method on the same pair of real tensors (``--tensors``, the tensors stage's output) for one epoch of ``--steps``
   steps (``train.epochs`` 1, ``train.max_steps_per_epoch`` ``--steps``, every other setting params.yaml's), in
   turn, ``--repeats`` times, alternating which goes first. Steps/s = steps / seconds of ``train()`` (the epoch's
   validation scoring included, as in a real run). The median of each side and their ratio are reported.
2. Equality: the first old and new runs' final weights, history losses and scores of the target's sessions are
   compared exactly; where they differ (``train.recurrence: fused`` rounds differently) the largest difference is
   reported. Whether that changes results is judged on 3 seeds of every pair (bench/README.md).
3. Profile of each side (``--profile-steps`` steps, old then new): wall seconds per category (batching, GRU forward,
   attention pooling forward, heads forward, each backward pass, optimiser, validation scoring, the rest) from
   timers around the trainer's functions, and torch.profiler's top operators of the same run.

4. Kernels in one process (``--blocks`` blocks of ``--block-steps`` steps of one training run, the GRU kernel
   switched per block: torch's, the unrolled copy, the fused recurrence): the least noisy ratio on a loaded machine,
   valid because the kernels compute the same function (the fused one rounds differently; see packed_gru.py).

The machine is shared: compare the ratio measured within one run, not numbers across runs. The report goes to
stdout and ``--output`` (bench/train_results.md) with the command, the cores and the load.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]
BENCH = REPOSITORY / "bench"

#: The commit before issue 20's training changes: the "old" side by default.
DEFAULT_BASE = "1c5573c"


# ============================================================================= children (run in subprocesses)


def _configure(arguments: dict[str, Any], steps: int) -> tuple[Any, list[Any], Any]:
    """params.yaml's train section with one epoch of ``steps`` steps, and the pair's tensors."""
    import dataclasses

    from zerolog.artifacts import load_tensors
    from zerolog.config_loader import load_params

    params = load_params(arguments["params"])  # each side's own params.yaml (its schema may differ)
    config = dataclasses.replace(params.train, epochs=1, max_steps_per_epoch=steps, device="cpu")
    tensors = Path(arguments["tensors"])
    sources = [load_tensors(tensors / name) for name in arguments["sources"]]
    return config, sources, load_tensors(tensors / arguments["target"])


def child_train(arguments: dict[str, Any]) -> dict[str, Any]:
    """Train once with the zerolog package on ``sys.path``; time it and save what it computed."""
    import numpy as np
    import torch

    from zerolog.training.loop import score, train

    config, sources, target = _configure(arguments, arguments["steps"])
    started = time.perf_counter()
    result = train(config, sources, target, arguments["method"], arguments["seed"], progress=False)
    seconds = time.perf_counter() - started
    rows = np.arange(int(target.index.shape[0]))
    outputs = {
        "weights": {name: tensor.detach().clone() for name, tensor in result.model.state_dict().items()},
        "losses": {name: value for name, value in result.history[-1].items() if name != "seconds"},
        "target_scores": torch.from_numpy(score(result.model, target, rows, config.score_batch_size)),
        "threshold": result.threshold_source_val,
    }
    torch.save(outputs, arguments["outputs"])
    return {"seconds": seconds, "steps": result.steps}


#: Seconds of the timed blocks running inside the current one (one entry per open block), to keep shares exclusive.
_NESTED: list[float] = []


@contextlib.contextmanager
def _timed(totals: dict[str, float], category: str) -> Iterator[None]:
    """Add the wall seconds of the block, less those of timed blocks inside it, to ``totals[category]``."""
    import torch

    started = time.perf_counter()
    _NESTED.append(0.0)
    with torch.profiler.record_function(f"bench::{category}"):
        yield
    elapsed = time.perf_counter() - started
    totals[category] = totals.get(category, 0.0) + elapsed - _NESTED.pop()
    if _NESTED:
        _NESTED[-1] += elapsed


def _wrap(owner: Any, name: str, totals: dict[str, float], category: str | Callable[[], str]) -> None:
    """Replace ``owner.name`` by a timed version (category: a name, or a function giving it per call)."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        if totals.get("__scoring__"):
            return original(*args, **kwargs)  # inside the validation scoring: its forward passes count there
        name = category() if callable(category) else category
        totals["__scoring__"] = float(name.startswith("validation"))
        try:
            with _timed(totals, name):
                return original(*args, **kwargs)
        finally:
            totals["__scoring__"] = 0.0

    setattr(owner, name, timed)


def _instrument(totals: dict[str, float]) -> None:
    """Timers around the trainer's parts (module attributes, so both loop.py and meta.py see them)."""
    import torch

    from zerolog.model import encoder, heads
    from zerolog.training import loop, meta

    _wrap(loop, "_start", totals, "set-up (pools, model, Adam: its first use imports torch._dynamo)")
    _wrap(loop, "_make_batch", totals, "batching: _make_batch (gather, lookup, padding)")
    _wrap(meta, "split_meta_batch", totals, "batching: meta split (subset copies)")
    _wrap(meta, "concatenate_padded", totals, "batching: concatenate_padded (source + target)")
    _wrap(encoder.SessionEncoder, "states", totals, "forward: GRU (pack, 2-layer BiGRU, unpack)")
    _wrap(encoder.AttentionPooling, "forward", totals, "forward: attention pooling")
    _wrap(heads.AnomalyClassifier, "forward", totals, "forward: classifier head")
    _wrap(heads.DomainDiscriminator, "forward", totals, "forward: domain head (GRL + MLP)")
    gradients = iter(())

    def gradient_name() -> str:
        return next(gradients, "backward: other")

    def reset_gradients(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def step(*args: Any, **kwargs: Any) -> Any:
            nonlocal gradients
            gradients = iter(("backward: inner gradient at θ (meta-train)",
                              "backward: meta-test gradient at θ' (outer)"))  # fmt: skip
            return original(*args, **kwargs)

        return step

    meta.meta_step = reset_gradients(meta.meta_step)
    loop.meta_step = meta.meta_step
    _wrap(torch.autograd, "grad", totals, gradient_name)
    _wrap(meta, "_apply_gradients", totals, "optimiser: clip + Adam")
    _wrap(loop, "validation_scores", totals, "validation scoring (per epoch)")


def child_profile(arguments: dict[str, Any]) -> dict[str, Any]:
    """One epoch with timers (category split), then torch.profiler's top operators over a quarter of the steps."""
    import dataclasses

    import torch

    from zerolog.training.loop import train

    config, sources, target = _configure(arguments, arguments["profile_steps"])
    totals: dict[str, float] = {}
    _instrument(totals)
    started = time.perf_counter()
    train(config, sources, target, arguments["method"], arguments["seed"], progress=False)
    seconds = time.perf_counter() - started
    totals.pop("__scoring__", None)
    split = {**totals, "other (sampling, losses, Python glue)": seconds - sum(totals.values())}
    operator_steps = max(1, arguments["profile_steps"] // 4)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        train(dataclasses.replace(config, max_steps_per_epoch=operator_steps), sources, target, arguments["method"],
              arguments["seed"], progress=False)  # fmt: skip
    table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=arguments["top"])
    return {
        "seconds": seconds,
        "steps": arguments["profile_steps"],
        "split": split,
        "operators": table,
        "operator_steps": operator_steps,
    }


#: The GRU kernels compared in one process: torch's own (old), the unrolled copy of it (bit-identical) and the fused
#: recurrence (train.recurrence fused); blocks cycle through them so each sees the same load and the same run.
KERNELS = ("torch", "unrolled", "fused", "fused", "unrolled", "torch")


def child_interleaved(arguments: dict[str, Any]) -> dict[str, Any]:
    """In one process, blocks of steps of one training run, the GRU kernel switched per block (``KERNELS``)."""
    from zerolog.model import encoder
    from zerolog.training import loop

    config, sources, target = _configure(arguments, 10**6)
    session = loop._start(config, sources, target, arguments["method"], arguments["seed"])
    unrolled = encoder.unrolled_applies
    seconds: dict[str, list[float]] = {kernel: [] for kernel in KERNELS}
    for block in range(arguments["blocks"]):
        kernel = KERNELS[block % len(KERNELS)]
        encoder.unrolled_applies = (lambda gru, data: False) if kernel == "torch" else unrolled
        session.model.encoder.fused = kernel == "fused"
        started = time.perf_counter()
        for _ in range(arguments["block_steps"]):
            loop._step(session)
        seconds[kernel].append(time.perf_counter() - started)
    return {"seconds": seconds, "block_steps": arguments["block_steps"]}


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "train": child_train, "profile": child_profile, "interleaved": child_interleaved,
}  # fmt: skip


def _child_main(kind: str, arguments_path: str) -> None:
    arguments = json.loads(Path(arguments_path).read_text(encoding="utf-8"))
    import torch

    torch.set_num_threads(1)
    result = CHILDREN[kind](arguments)
    Path(arguments["result"]).write_text(json.dumps(result), encoding="utf-8")


# ============================================================================= parent


def _run_child(kind: str, source: Path, arguments: dict[str, Any], scratch: Path, label: str) -> dict[str, Any]:
    """Run a child with ``source`` (a ``src`` folder) first on PYTHONPATH; its JSON result."""
    arguments = {**arguments, "result": str(scratch / f"{label}.json")}
    arguments_path = scratch / f"{label}.arguments.json"
    arguments_path.write_text(json.dumps(arguments), encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", kind, str(arguments_path)],
                   check=True, env=environment, cwd=REPOSITORY)  # fmt: skip
    return json.loads(Path(arguments["result"]).read_text(encoding="utf-8"))


@contextlib.contextmanager
def _worktree(base: str) -> Iterator[Path]:
    """A detached ``git worktree`` of ``base`` in a temporary folder, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="bench-train-base-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(folder / "tree"), base], check=True, cwd=REPOSITORY,
                   capture_output=True)  # fmt: skip
    try:
        yield folder / "tree"
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder / "tree")], check=False, cwd=REPOSITORY)


def _compare(old_path: Path, new_path: Path) -> dict[str, str]:
    """Two runs' outputs: weights, last history row, target scores, threshold; "identical" or the largest difference."""
    import numpy as np
    import torch

    old, new = torch.load(old_path, weights_only=True), torch.load(new_path, weights_only=True)

    def difference(left: Any, right: Any) -> str:
        left, right = np.asarray(left, dtype=np.float64), np.asarray(right, dtype=np.float64)
        if np.array_equal(left, right, equal_nan=True):
            return "identical"
        return f"differ (largest |difference| {float(np.nanmax(np.abs(left - right))):.2e})"

    names = sorted(old["weights"])
    weights = np.concatenate([old["weights"][name].numpy().ravel() for name in names])
    new_weights = np.concatenate([new["weights"][name].numpy().ravel() for name in names])
    losses = sorted(old["losses"])
    return {
        "weights": difference(weights, new_weights),
        "history": difference([old["losses"][name] for name in losses], [new["losses"][name] for name in losses]),
        "target_scores": difference(old["target_scores"].numpy(), new["target_scores"].numpy()),
        "threshold": difference(old["threshold"], new["threshold"]),
    }


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tensors", type=Path, default=REPOSITORY / "data" / "tensors",
                        help="the tensors stage's output folder")  # fmt: skip
    parser.add_argument("--sources", nargs="+", default=["hdfs"], help="labeled source systems")
    parser.add_argument("--target", default="bgl", help="the unlabeled target system")
    parser.add_argument("--method", default="zerolog", help="train.methods entry to train")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--steps", type=int, default=30, help="steps of each timed run (one epoch)")
    parser.add_argument("--repeats", type=int, default=2, help="old/new runs each, alternating which goes first")
    parser.add_argument("--profile-steps", type=int, default=30, help="steps of the profiled epoch (0: no profile)")
    parser.add_argument("--top", type=int, default=15, help="torch.profiler operators shown")
    parser.add_argument("--blocks", type=int, default=18, help="in-process blocks of steps, kernels cycled (0: none)")
    parser.add_argument("--block-steps", type=int, default=3, help="steps per in-process block")
    parser.add_argument("--base", default=DEFAULT_BASE, help="git revision of the old path")
    parser.add_argument("--output", type=Path, default=BENCH / "train_results.md", help="markdown report")
    return parser.parse_args(argv)


def _load() -> str:
    with contextlib.suppress(OSError):
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    return "n/a"


def main(argv: list[str] | None = None) -> None:
    arguments = _arguments(argv)
    shared = {"tensors": str(arguments.tensors.resolve()), "sources": arguments.sources, "target": arguments.target,
              "method": arguments.method, "seed": arguments.seed, "steps": arguments.steps,
              "profile_steps": arguments.profile_steps, "top": arguments.top, "blocks": arguments.blocks,
              "block_steps": arguments.block_steps}  # fmt: skip
    load_before = _load()
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch_name, _worktree(arguments.base) as base:
        scratch = Path(scratch_name)
        sides = {"old": base / "src", "new": REPOSITORY / "src"}
        for repeat in range(arguments.repeats):
            for side in ("old", "new") if repeat % 2 == 0 else ("new", "old"):
                label = f"{side}-{repeat}"
                params = str(sides[side].parent / "params.yaml")
                child = {**shared, "outputs": str(scratch / f"{label}.pt"), "params": params}
                runs[side].append(_run_child("train", sides[side], child, scratch, label))
                print(f"{label}: {runs[side][-1]['steps'] / runs[side][-1]['seconds']:.3f} steps/s", flush=True)
        equality = _compare(scratch / "old-0.pt", scratch / "new-0.pt")
        interleaved = None
        if arguments.blocks > 0:
            current = {**shared, "params": str(REPOSITORY / "params.yaml")}
            interleaved = _run_child("interleaved", sides["new"], current, scratch, "interleaved")
        profiles = {}
        for side in ("old", "new") if arguments.profile_steps > 0 else ():
            profiled = {**shared, "params": str(sides[side].parent / "params.yaml")}
            profiles[side] = _run_child("profile", sides[side], profiled, scratch, f"profile-{side}")
    text = report(arguments, argv, runs, equality, profiles, load_before, _load())
    text += _interleaved_lines(interleaved)
    print(text)
    arguments.output.write_text(text, encoding="utf-8")


def _rate(run: dict[str, Any]) -> float:
    return float(run["steps"]) / float(run["seconds"])


def report(
    arguments: argparse.Namespace, argv: list[str] | None, runs: dict[str, list[dict[str, Any]]],
    equality: dict[str, str], profiles: dict[str, dict[str, Any]], load_before: str, load_after: str,
) -> str:  # fmt: skip
    """The markdown report: machine, old/new steps/s and ratio, equality, the profile split and top operators."""
    old = statistics.median(_rate(run) for run in runs["old"])
    new = statistics.median(_rate(run) for run in runs["new"])
    command = " ".join(["python bench/train.py", *(argv if argv is not None else sys.argv[1:])])
    lines = [
        "# Train-stage benchmark (bench/train.py)", "",
        f"- command: `{command}`",
        f"- date (UTC): {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M')}",
        f"- machine: {platform.machine()}, nproc {os.cpu_count()}, Python {platform.python_version()}, "
        f"1 torch thread per run",
        f"- load (uptime) before: `{load_before}`", f"- load (uptime) after: `{load_after}`",
        f"- input: {'+'.join(arguments.sources)} -> {arguments.target}, method {arguments.method}, seed "
        f"{arguments.seed}, one epoch of {arguments.steps} steps (validation scoring included); old = "
        f"`{arguments.base}`, new = this checkout", "",
        "| side | runs (steps/s) | median steps/s |", "|---|---|---|",
        f"| old | {', '.join(f'{_rate(run):.3f}' for run in runs['old'])} | {old:.3f} |",
        f"| new | {', '.join(f'{_rate(run):.3f}' for run in runs['new'])} | {new:.3f} |", "",
        f"**new / old steps/s: {new / old:.3f}**", "",
        "Outputs of the first old and new runs compared exactly (train.recurrence fused rounds differently, see "
        "src/zerolog/model/packed_gru.py): " + ", ".join(f"{name} {verdict}" for name, verdict in equality.items()),
        "",
    ]  # fmt: skip
    for side, profile in profiles.items():
        lines += _profile_lines(side, profile)
    return "\n".join(lines) + "\n"


def _interleaved_lines(interleaved: dict[str, Any] | None) -> str:
    """The in-process table: the GRU kernel switched per block inside one training run (``KERNELS``)."""
    if interleaved is None:
        return ""
    steps = interleaved["block_steps"]
    rates = {kernel: [steps / seconds for seconds in blocks] for kernel, blocks in interleaved["seconds"].items()}
    median = {kernel: statistics.median(values) for kernel, values in rates.items() if values}
    return "\n".join([
        "## Kernels in one process (blocks of one training run)", "",
        f"torch = torch.nn.GRU's CPU kernel (before issue 20), unrolled = zerolog.model.packed_gru (bit-identical), "
        f"fused = train.recurrence fused; switched every {steps} steps of the same run, in the order "
        f"{' '.join(KERNELS)}.", "",
        "| kernel | blocks (steps/s) | median steps/s | / torch |", "|---|---|---:|---:|",
        *(f"| {kernel} | {', '.join(f'{rate:.3f}' for rate in rates[kernel])} | {median[kernel]:.3f} | "
          f"{median[kernel] / median['torch']:.3f} |" for kernel in median),
        "", f"**fused / torch steps/s (in-process): {median['fused'] / median['torch']:.3f}**", "",
    ])  # fmt: skip


def _profile_lines(side: str, profile: dict[str, Any]) -> list[str]:
    total = float(profile["seconds"])
    lines = [f"## Profile of the {side} path: one epoch of {profile['steps']} steps, {total:.1f} s", "",
             "| category | seconds | share |", "|---|---:|---:|"]  # fmt: skip
    for name, seconds in sorted(profile["split"].items(), key=lambda item: -item[1]):
        lines.append(f"| {name} | {seconds:.2f} | {100 * seconds / total:.1f}% |")
    caption = (f"torch.profiler, top operators by self CPU ({profile['operator_steps']} steps; the profiler's own "
               "overhead inflates the many small GRU operators):")  # fmt: skip
    lines += ["", caption, "", "```", profile["operators"].rstrip(), "```", ""]
    return lines


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child_main(sys.argv[2], sys.argv[3])
    else:
        main()
