"""Local processes: the lab's Prefect server, worker, PostgreSQL and browser on this machine."""
