"""``python -m pacsdash``: the same as the ``pacsdash`` command."""

import sys

from pacsdash.cli import main

if __name__ == "__main__":  # not when worker processes re-import this module
    sys.exit(main())
