"""Stage evaluate: Score every method of one pair on the target test split, with label-free thresholds."""

import sys

from zerolog.stages import run_stage

if __name__ == "__main__":
    run_stage("evaluate", sys.argv[1:])
