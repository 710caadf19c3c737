"""``python -m scoresde`` is the same as the ``scoresde`` command."""

import sys

from scoresde.cli import main

sys.exit(main())
