"""Stage paper: one pair under the published protocol (zerolog.evaluation.paper).

Usage: python pipeline/paper.py PAIR
"""

import sys

from zerolog.stages import run_stage

if __name__ == "__main__":
    run_stage("paper", sys.argv[1:])
