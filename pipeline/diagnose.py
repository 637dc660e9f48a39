"""Stage diagnose: ROC-AUC of label-free signals on every labeled system's validation split (what carries over)."""

import sys

from zerolog.cli import run_stage


def main() -> None:
    from zerolog.evaluation.signals import diagnose

    run_stage(diagnose, sys.argv[1:], usage="python pipeline/diagnose.py")


if __name__ == "__main__":
    main()
