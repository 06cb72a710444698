"""``python -m evalwatt.contracts``: print the contracts' fields (docs/architecture.md)."""

import sys

from evalwatt.contracts.describe import describe_contracts

sys.stdout.write(describe_contracts())
