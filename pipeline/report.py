"""Stage report: Build reports/results.md and the F1 heatmap from every pair's metrics."""

import sys

from zerolog.stages import run_stage

if __name__ == "__main__":
    run_stage("report", sys.argv[1:])
