"""Stage embed: Embed every template of every dataset into one semantic space.

Output: paths.features/template_vectors.parquet.
"""

import sys

from zerolog.stages import run_stage

if __name__ == "__main__":
    run_stage("embed", sys.argv[1:])
