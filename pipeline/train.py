"""Stage train: Train every method in train.methods on one source->target pair; write checkpoints and target scores."""

import sys

from zerolog.stages import run_stage

if __name__ == "__main__":
    run_stage("train", sys.argv[1:])
