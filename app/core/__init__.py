"""The kernel every other package builds on: configuration, errors and result statuses, secrets and
their redaction, time, files, JSON from outside, logging, progress, and the state file.

May import: nothing else of the app (the standard library, requests and PyYAML only). One deliberate
exception: `config` validates the `schedule.cron`, `metrics`, `notify` and `hooks` sections with the
parsers of the packages that own them (`crontab.parser`, `observe.metrics`, `observe.notify`,
`sync.hooks`), imported lazily inside the functions that need them.
"""
