"""Stage parse: Parse one dataset's logs into paths.parsed/<dataset>/{lines,templates}.parquet."""

import sys

from zerolog.cli import run_stage


def main() -> None:
    from zerolog.data.parse import parse_dataset

    run_stage(parse_dataset, sys.argv[1:], usage="python pipeline/parse.py DATASET")


if __name__ == "__main__":
    main()
