"""Stage baselines: Fit the target-only baselines (unsupervised detector, supervised oracle) on one system."""

import sys

from zerolog.cli import run_stage


def main() -> None:
    from zerolog.evaluation.baselines import run_target_baselines

    run_stage(run_target_baselines, sys.argv[1:], usage="python pipeline/baselines.py SYSTEM")


if __name__ == "__main__":
    main()
