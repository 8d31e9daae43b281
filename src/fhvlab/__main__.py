"""`python -m fhvlab ...`: see fhvlab.cli.

The set-up commands (`server start`, `config`, `storage`, `work-queue`, `deploy`, `up`) are
first put to the checks of the lab's record (fhvlab.local.uptodate, standard library only):
when there is nothing to do, the command answers and exits before Prefect is ever imported.
"""

import sys

from fhvlab.local import uptodate

code = uptodate.main(sys.argv[1:])
if code is None:
    from fhvlab.cli import main

    code = main()
sys.exit(code)
