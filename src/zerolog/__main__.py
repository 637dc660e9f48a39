"""``python -m zerolog <command>`` and the ``zerolog`` console script: one command today, ``detect``."""

from __future__ import annotations

import sys

COMMANDS = ("detect",)


def main(argv: list[str] | None = None) -> None:
    arguments = sys.argv[1:] if argv is None else argv
    if not arguments or arguments[0] not in COMMANDS:
        sys.exit(f"usage: zerolog {{{','.join(COMMANDS)}}} ... (zerolog detect --help)")
    from zerolog.detection.cli import main as detect

    detect(arguments[1:])


if __name__ == "__main__":
    main()
