"""Stage diagnose: ROC-AUC of label-free signals on every labeled system's validation split (what carries over)."""

import sys

from zerolog.stages import run_stage

if __name__ == "__main__":
    run_stage("diagnose", sys.argv[1:])
