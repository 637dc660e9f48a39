"""Stage report: Build reports/results.md and the F1 heatmap from every pair's metrics."""

import sys

from zerolog.cli import run_stage


def main() -> None:
    from zerolog.report import build_report

    run_stage(build_report, sys.argv[1:], usage="python pipeline/report.py")


if __name__ == "__main__":
    main()
