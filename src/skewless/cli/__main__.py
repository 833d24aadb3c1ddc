"""``python -m skewless.cli``: the same entry point as the ``skewless`` command."""

import sys

from skewless.cli import main

sys.exit(main())
