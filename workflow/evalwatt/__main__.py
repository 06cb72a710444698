"""``python -m evalwatt``: the same as the ``evalwatt`` command."""

import sys

from evalwatt.ops.cli import main

sys.exit(main())
