import io
import logging

from fhvlab.months import Month
from fhvlab.progress import LogProgress, TerminalBar


def test_terminal_bar_shows_each_month_size_and_speed():
    out = io.StringIO()
    bar = TerminalBar(stream=out, width=10)
    june, july = Month(2021, 6), Month(2021, 7)
    bar(june, 5_000_000, 10_000_000, False)
    bar(july, 1_000_000, None, False)
    bar(june, 10_000_000, 10_000_000, True)
    bar(july, 3_000_000, 3_000_000, True)
    text = out.getvalue()
    assert "\r2021-06 [#####.....] 5.0/10.0 MB" in text
    assert "2021-06 [##########] 10.0/10.0 MB | 2021-07 [##########] 3.0/3.0 MB" in text
    assert "MB/s" in text
    assert text.endswith("\n")  # the line is closed once every month finished


def test_log_progress_logs_each_quarter_once(caplog):
    logger = logging.getLogger("test-progress")
    progress = LogProgress(logger)
    month = Month(2021, 6)
    with caplog.at_level(logging.INFO, logger="test-progress"):
        for done in range(0, 20_000_001, 1_000_000):
            progress(month, done, 20_000_000, False)
    assert [r.getMessage() for r in caplog.records] == [
        "2021-06: 5.0/20.0 MB (25%)",
        "2021-06: 10.0/20.0 MB (50%)",
        "2021-06: 15.0/20.0 MB (75%)",
        "2021-06: 20.0/20.0 MB (100%)",
    ]
