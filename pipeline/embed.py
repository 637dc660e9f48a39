"""Stage embed: Embed every template of every dataset into one semantic space: paths.features/template_vectors.parquet."""

import sys

from zerolog.cli import run_stage


def main() -> None:
    from zerolog.features.embed import embed_templates

    run_stage(embed_templates, sys.argv[1:], usage="python pipeline/embed.py")


if __name__ == "__main__":
    main()
