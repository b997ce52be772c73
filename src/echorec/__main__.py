"""`python -m echorec ...` (also what `torchrun -m echorec` runs)."""

import sys

from echorec.cli import main

sys.exit(main())
