"""FHV orchestration lab: the plain, testable logic behind the lab's Prefect flows.

Layers, in the order data flows through them: `data` (months -> parquet files), `model`
(per-pair statistics -> the course's model), `orchestration` (what the lab sets up in
Prefect), `local` (processes on this machine), `cli` (`python -m fhvlab`, one module per
Makefile section). `settings` reads every knob (defaults in lab.mk); `files` holds atomic
writes and the one file lock. `flows/` wires these as Prefect tasks and flows.
"""

__version__ = "0.1.0"
