"""Model: the course's ride-duration model on per-pair statistics; a run's artifacts."""
