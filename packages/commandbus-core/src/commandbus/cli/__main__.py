"""``python -m commandbus.cli``: the ``commandbus`` console script."""

import sys

from commandbus.cli import main

sys.exit(main())
