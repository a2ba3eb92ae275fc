"""``python -m pipelines.cli`` behaves like ``mmfeat``."""

import sys

from pipelines.cli import main

sys.exit(main())
