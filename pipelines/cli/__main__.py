"""``python -m mmfeat.pipelines.cli`` behaves like ``mmfeat``."""

import sys

from mmfeat.pipelines.cli import main

sys.exit(main())
