import sys

from iltk.cli import main

sys.exit(main())
