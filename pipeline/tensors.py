"""Stage tensors: Turn one system's sessions into padded sequences of template indices, masks, labels and splits."""

import sys

from zerolog.cli import run_stage


def main() -> None:
    from zerolog.features.tensors import build_tensors

    run_stage(build_tensors, sys.argv[1:], usage="python pipeline/tensors.py SYSTEM")


if __name__ == "__main__":
    main()
