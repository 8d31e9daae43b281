"""The deployment's pull step: run the flow from the checkout of the worker that picked it up.

Prefect's own `set_working_directory` step with `{{ $LAB_ROOT }}` is resolved when
`make deploy` runs, so every worker was sent to the deploying checkout's folder, which does
not exist on another machine. This step is resolved where the flow run starts instead: it
enters the checkout whose `fhvlab` package the worker's Python imported (its .venv).
"""

from __future__ import annotations

import os

from fhvlab import settings


def enter_checkout() -> dict[str, str]:
    """Pull step: make this checkout the working directory; returns {'directory': path}."""
    os.chdir(settings.ROOT)
    return {"directory": str(settings.ROOT)}
