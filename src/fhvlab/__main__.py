"""`python -m fhvlab ...`: see fhvlab.cli."""

import sys

from fhvlab.cli import main

sys.exit(main())
