"""Exceptions a student can act on; the command-line edge prints them as one line."""


class LabError(Exception):
    """An expected failure with a message that says what to do; no traceback is shown."""


class BadInput(LabError, ValueError):
    """A malformed argument (date, month, URL, port): nothing was done."""


class DownloadError(LabError):
    """A month could not be downloaded or failed validation; no file was left behind."""


class DataError(LabError):
    """An input file is unusable for training (missing column, no rows left)."""


class DiskSpaceError(DownloadError):
    """A month is larger than the free space in the data folder; nothing was written."""
