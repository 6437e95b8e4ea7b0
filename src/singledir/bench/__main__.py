"""``python -m singledir.bench``: :func:`singledir.bench.cli.main`."""

from singledir.bench.cli import main

if __name__ == "__main__":
    main()
