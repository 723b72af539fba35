"""``python -m governance_scanner``: the scanner without Django (see ``cli``)."""

import sys

from governance_scanner.cli import main

sys.exit(main())
