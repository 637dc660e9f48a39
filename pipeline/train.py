"""Stage train: Train every method in train.methods on one source->target pair; write checkpoints and target scores."""

import sys

from zerolog.cli import run_stage


def main() -> None:
    from zerolog.training.pipeline import train_pair

    run_stage(train_pair, sys.argv[1:], usage="python pipeline/train.py PAIR")


if __name__ == "__main__":
    main()
