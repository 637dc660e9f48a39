"""Stage download: Copy (bundled) or fetch (loghub) one dataset into paths.raw/<dataset>."""

import sys

from zerolog.cli import run_stage


def main() -> None:
    from zerolog.data.download import download_dataset

    run_stage(download_dataset, sys.argv[1:], usage="python pipeline/download.py DATASET")


if __name__ == "__main__":
    main()
