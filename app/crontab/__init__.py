"""The schedule: the supercronic-compatible crontab parser (`from app.crontab import parse_crontab,
parse_schedule, CrontabError`), the scheduler that runs each job line in its own loop, and the `cron`
daemon that wires the schedule, the listener and the start-up sync together.

May import: `parser` and `scheduler` import nothing else of the app (the standard library only);
`daemon` may import app.core, app.observe, app.commands and this package.
"""
from app.crontab.parser import Crontab, CrontabError, Job, Schedule, parse_crontab, parse_schedule

__all__ = ["Crontab", "CrontabError", "Job", "Schedule", "parse_crontab", "parse_schedule"]
