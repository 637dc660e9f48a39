"""Stage sessionize: Group one dataset's lines into labeled, split sessions.

Output: paths.sessions/<dataset>/sessions.parquet.
"""

import sys

from zerolog.stages import run_stage

if __name__ == "__main__":
    run_stage("sessionize", sys.argv[1:])
