"""Entry point: ``python -m evalwatt.sampling`` (see evalwatt.sampling.sampler)."""

import sys

from evalwatt.sampling.sampler import main

sys.exit(main())
