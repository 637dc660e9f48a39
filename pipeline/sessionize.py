"""Stage sessionize: Group one dataset's lines into labeled, split sessions: paths.sessions/<dataset>/sessions.parquet."""

import sys

from zerolog.cli import run_stage


def main() -> None:
    from zerolog.data.sessionize import sessionize_dataset

    run_stage(sessionize_dataset, sys.argv[1:], usage="python pipeline/sessionize.py DATASET")


if __name__ == "__main__":
    main()
