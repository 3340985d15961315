"""``python -m lucidax``: the ``lucidax`` command (for environments whose scripts folder is not
on PATH, and for launching worker processes with ``sys.executable``)."""

import sys

from lucidax.cli import main

if __name__ == "__main__":
    sys.exit(main())
