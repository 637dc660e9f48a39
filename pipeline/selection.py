"""Stage select: one system's detector recipe, chosen on the other labeled systems (leave-one-system-out)."""

import sys

from zerolog.stages import run_stage

if __name__ == "__main__":
    run_stage("selection", sys.argv[1:])
