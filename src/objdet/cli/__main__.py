"""`python -m objdet.cli` (what `torchrun ... -m objdet.cli train` starts)."""

import sys

from objdet.cli import main

sys.exit(main())
