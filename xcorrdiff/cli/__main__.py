"""``python -m xcorrdiff.cli``."""

import sys

from xcorrdiff.cli import main

sys.exit(main())
