"""Stage download: Copy (bundled) or fetch (loghub) one dataset into paths.raw/<dataset>."""

import sys

from zerolog.stages import run_stage

if __name__ == "__main__":
    run_stage("download", sys.argv[1:])
