"""Stage baselines: the target-only label-free detectors, the level rule and the supervised ORACLE on one system."""

import sys

from zerolog.stages import run_stage

if __name__ == "__main__":
    run_stage("baselines", sys.argv[1:])
