"""``python -m jobkit.worker``: see :mod:`jobkit.worker.cli`."""

import sys

from jobkit.worker.cli import main

if __name__ == "__main__":
    sys.exit(main())
