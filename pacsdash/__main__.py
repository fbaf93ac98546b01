"""``python -m pacsdash``: the same as the ``pacsdash`` command."""

import sys

from pacsdash.cli import main

sys.exit(main())
