"""The read-only commands a user runs by hand: `check` (pre-flight report) and `status` (installed and
remote versions), with the daemon's start record used by `healthcheck`.

May import: app.core, app.hub, app.observe, and app.crontab.parser (check validates the crontab).
"""
