"""Stage tensors: Turn one system's sessions into padded sequences of template indices, masks, labels and splits."""

import sys

from zerolog.stages import run_stage

if __name__ == "__main__":
    run_stage("tensors", sys.argv[1:])
