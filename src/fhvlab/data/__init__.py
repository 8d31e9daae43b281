"""Data: months a student types -> FHV parquet files on disk (download, validate, progress)."""
