"""FHV orchestration lab: the plain, testable logic behind the lab's Prefect flows."""

__version__ = "0.1.0"
