import io
import logging

from rich.console import Console

from fhvlab.data.months import Month
from fhvlab.data.progress import LogProgress, RichBar


def test_rich_bar_shows_each_month_size_and_speed():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    june, july = Month(2021, 6), Month(2021, 7)
    with RichBar(console=console) as bar:
        bar(june, 5_000_000, 10_000_000, False)
        bar(july, 1_000_000, None, False)
        bar(june, 10_000_000, 10_000_000, True)
        bar(july, 3_000_000, 3_000_000, True)
    text = out.getvalue()
    assert "2021-06" in text
    assert "2021-07" in text
    assert "10.0/10.0 MB" in text
    assert "3.0/3.0 MB" in text


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
