"""Entry point for ``python -m stnlab`` (and ``torchrun -m stnlab``)."""

from stnlab.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
