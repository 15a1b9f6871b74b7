"""``python -m iltk ...``: the same as the ``iltk`` command."""

import sys

from iltk.cli import main

sys.exit(main())
