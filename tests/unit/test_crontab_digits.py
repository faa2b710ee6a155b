"""Crontab numbers are ASCII digits only, as in supercronic (Go's \\d), not any Unicode digit."""
from __future__ import annotations

import pytest

from app.crontab.parser import CrontabError, parse_schedule


@pytest.mark.parametrize("expression", ["*/\u0665 * * * *", "\u0665 * * * *", "0 0 * * * \u0662\u0660\u0663\u0660",
                                        "0-\u0665 * * * *", "*/\uff15 * * * *", "\u00b2 * * * *"])
def test_non_ascii_digits_are_refused(expression: str) -> None:
    with pytest.raises(CrontabError):
        parse_schedule(expression)


def test_ascii_steps_still_parse() -> None:
    assert str(parse_schedule("*/5 * * * *")) == "*/5 * * * *"
