"""``python -m swarmlib``: the same as the ``swarmlib`` command."""

import sys

from swarmlib.cli import main

sys.exit(main())
