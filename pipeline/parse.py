"""Stage parse: Parse one dataset's logs into paths.parsed/<dataset>/{lines,templates}.parquet."""

import sys

from zerolog.stages import run_stage

if __name__ == "__main__":
    run_stage("parse", sys.argv[1:])
