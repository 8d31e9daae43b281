"""Prefect's floor for `make bench`: an empty flow run against the running server.

`python scripts/noop.py` pays what any flow script pays (the interpreter, Prefect's import,
one flow run's life cycle, exit) and does nothing else.
"""

from prefect import flow


@flow
def noop() -> None:
    """An empty flow."""


if __name__ == "__main__":
    noop()
