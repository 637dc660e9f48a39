"""Stage evaluate: Score every method of one pair on the target test split, with label-free thresholds."""

import sys

from zerolog.cli import run_stage


def main() -> None:
    from zerolog.evaluation.evaluate import evaluate_pair

    run_stage(evaluate_pair, sys.argv[1:], usage="python pipeline/evaluate.py PAIR")


if __name__ == "__main__":
    main()
