"""Business hours: the calendars CXPULSE_BUSINESS_HOURS gives, and the time a wait spent inside them.

Each figure is checked against the reference's minute-by-minute walk (tests/reference.py), over
waits that cross nights, weekends, holidays and both daylight-saving changes."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

import pytest

from streams.business_hours import parse_calendars
from streams.config import Settings
from streams.errors import ConfigError
from tests.reference import BusinessHours

CALENDARS = {
    # a lunch break, a short Saturday, Christmas closed; DST changes on 2026-03-29 and 2026-10-25
    "shop-eu": {"timezone": "Europe/Berlin", "hours": {"mon-fri": "09:00-12:30,13:30-18:00", "sat": "10:00-14:00"},
                "holidays": ["2026-12-24", "2026-12-25"]},
    # open until midnight and again after it; DST changes on 2026-03-08 and 2026-11-01
    "shop-us": {"timezone": "America/New_York", "hours": {"mon-thu": ["08:00-20:00"], "fri": "16:00-24:00",
                                                          "sat": "00:00-02:00,10:00-16:00"}},
    # a half-hour zone, every day
    "*": {"timezone": "Asia/Kolkata", "hours": {"mon-sun": "09:30-17:45"}},
}
TEXT = json.dumps(CALENDARS)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


def test_a_friday_evening_ticket_answered_on_monday_waited_only_the_open_hours() -> None:
    calendar = parse_calendars(TEXT).get("shop-eu")
    # created Fri 2026-12-04 17:00 Berlin (16:00 UTC), answered Mon 2026-12-07 10:00 Berlin (09:00 UTC):
    # 1 h on Friday, 4 h on Saturday, 1 h on Monday
    assert calendar.business_ms(ms("2026-12-04T16:00:00"), ms("2026-12-07T09:00:00")) == 6 * 3_600_000
    # over Christmas Eve and Day (Thu, Fri) and the weekend: Wed 17:00 Berlin -> Mon 09:30 Berlin
    assert calendar.business_ms(ms("2026-12-23T16:00:00"), ms("2026-12-28T08:30:00")) == 3_600_000 + 4 * 3_600_000 + 1_800_000


def test_a_storefront_without_a_calendar_takes_the_default_and_without_one_gets_none() -> None:
    assert parse_calendars(TEXT).get("shop-other").timezone == "Asia/Kolkata"
    assert parse_calendars(json.dumps({"shop-eu": CALENDARS["shop-eu"]})).get("shop-other") is None
    assert not parse_calendars("")


@pytest.mark.parametrize("storefront", ["shop-eu", "shop-us", "shop-asia"])
def test_business_time_equals_the_minute_walk_across_nights_weekends_holidays_and_dst(storefront) -> None:
    calendars = parse_calendars(TEXT)
    reference = BusinessHours(TEXT)
    rng = random.Random(storefront)
    # around both DST changes of either zone, Christmas, and ordinary weeks
    anchors = [ms(day) for day in ("2026-03-07T12:00:00", "2026-03-28T12:00:00", "2026-10-24T12:00:00",
                                   "2026-10-31T12:00:00", "2026-12-22T12:00:00", "2026-06-10T03:17:00")]
    for _ in range(120):
        start = rng.choice(anchors) + rng.randrange(-3 * 86_400_000, 3 * 86_400_000)
        end = start + rng.choice([rng.randrange(0, 120_000), rng.randrange(0, 6 * 3_600_000),
                                  rng.randrange(0, 5 * 86_400_000)])
        expected = reference.seconds(storefront, start, end)
        assert calendars.get(storefront).business_ms(start, end) / 1000 == expected, (storefront, start, end)


def test_a_wait_that_ends_before_it_begins_took_no_business_time() -> None:
    calendar = parse_calendars(TEXT).get("shop-eu")
    assert calendar.business_ms(ms("2026-12-07T10:00:00"), ms("2026-12-07T09:00:00")) == 0


@pytest.mark.parametrize("value, named", [
    ('{"shop": {"timezone": "Mars/Base", "hours": {"mon": "09:00-17:00"}}}', "timezone 'Mars/Base'"),
    ('{"shop": {"timezone": "UTC", "hours": {"mnday": "09:00-17:00"}}}', "'mnday' in hours is not a weekday"),
    ('{"shop": {"timezone": "UTC", "hours": {"mon": "17:00-09:00"}}}', "'17:00-09:00' is not a range"),
    ('{"shop": {"timezone": "UTC", "hours": {"mon": "09:00-13:00,12:00-17:00"}}}', "ranges overlap"),
    ('{"shop": {"timezone": "UTC", "hours": {"mon-fri": "09:00-17:00", "fri": "10:00-12:00"}}}', "fri is listed twice"),
    ('{"shop": {"timezone": "UTC", "hours": {"mon": "9-17"}}}', "'9-17' is not a range"),
    ('{"shop": {"timezone": "UTC", "hours": {"mon": "09:00-17:00"}, "holidays": ["25.12.2026"]}}', "holiday '25.12.2026'"),
    ('{"shop": {"timezone": "UTC", "hours": {"mon": "09:00-17:00"}, "open": []}}', "unknown key 'open'"),
    ('{"shop": {"timezone": "UTC"', "not valid JSON"),
    ("/nonexistent/hours.json", "cannot read the file"),
])
def test_a_bad_calendar_fails_at_start_up_naming_the_variable_and_the_entry(value, named) -> None:
    with pytest.raises(ConfigError) as failed:
        Settings.from_env({"CXPULSE_BUSINESS_HOURS": value})
    assert "CXPULSE_BUSINESS_HOURS" in str(failed.value) and named in str(failed.value), str(failed.value)


def test_the_calendars_may_come_from_a_file(tmp_path) -> None:
    path = tmp_path / "business-hours.json"
    path.write_text(TEXT)
    settings = Settings.from_env({"CXPULSE_BUSINESS_HOURS": str(path)})
    assert settings.calendars.get("shop-us").timezone == "America/New_York"
