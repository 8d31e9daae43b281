"""`python -m fhvlab ...`: see fhvlab.cli.

The set-up commands (`server start`, `config`, `storage`, `work-queue`, `deploy`, `up`) are
first put to the lab's record (fhvlab.local.record, standard library only): when it says there
is nothing to do, the command answers from it and exits before Prefect is ever imported.
"""

import sys

from fhvlab.local import record

code = record.main(sys.argv[1:])
if code is None:
    from fhvlab.cli import main

    code = main()
sys.exit(code)
