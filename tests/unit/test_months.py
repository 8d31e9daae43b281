from datetime import date

import pytest

from fhvlab.data.months import Month, months_for, parse_date, parse_month
from fhvlab.errors import BadInput


@pytest.mark.parametrize(
    ("run_date", "train", "val"),
    [
        ("2021-08-15", "2021-06", "2021-07"),
        ("2021-03-31", "2021-01", "2021-02"),
        ("2021-01-01", "2020-11", "2020-12"),
        ("2021-02-10", "2020-12", "2021-01"),
        ("2024-02-29", "2023-12", "2024-01"),
    ],
)
def test_months_for_takes_two_and_one_calendar_months_before(run_date, train, val):
    got = months_for(parse_date(run_date))
    assert (str(got[0]), str(got[1])) == (train, val)


@pytest.mark.parametrize(
    "text", ["2021-8-15", "21-08-15", "tomorrow", "yesterday", "", "2021/08/15"]
)
def test_parse_date_rejects_wrong_format_naming_it(text):
    with pytest.raises(BadInput, match="YYYY-MM-DD"):
        parse_date(text)


@pytest.mark.parametrize("text", ["2021-02-30", "2021-13-01", "2023-02-29"])
def test_parse_date_rejects_days_that_do_not_exist(text):
    with pytest.raises(BadInput, match="not a real calendar day"):
        parse_date(text)


def test_parse_date_accepts_surrounding_blanks():
    assert parse_date(" 2021-08-15 ") == date(2021, 8, 15)


@pytest.mark.parametrize(
    "text", ["2021-13", "21-08", "yesterday", "2021-00", "2021-8", "2021-08-01"]
)
def test_parse_month_rejects_bad_months_naming_the_format(text):
    with pytest.raises(BadInput, match="YYYY-MM"):
        parse_month(text)


def test_month_shift_and_order():
    assert str(Month(2021, 1).shift(-1)) == "2020-12"
    assert str(Month(2021, 12).shift(1)) == "2022-01"
    assert Month(2021, 1) < Month(2021, 2) < Month(2022, 1)
    assert parse_month("2021-07") == Month(2021, 7)
