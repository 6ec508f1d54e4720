"""``python -m accessctl_client``: the same as the ``accessctl`` command."""

import sys

from .cli import main

sys.exit(main())
