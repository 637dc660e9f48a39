"""Stage baselines: Fit the target-only baselines (unsupervised detector, supervised oracle) on one system."""

import sys

from zerolog.stages import run_stage

if __name__ == "__main__":
    run_stage("baselines", sys.argv[1:])
