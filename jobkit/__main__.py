"""``python -m jobkit``: the admin command (see :mod:`jobkit.admin`)."""

import sys

from jobkit.admin import main

if __name__ == "__main__":
    sys.exit(main())
