"""One sync run: orchestration of every dataset (list once, decide, download, check, extract, install,
record), the pure decisions (needs syncing? stale? fits on disk?), the lock, the summary, the
verify/post_sync hooks, and the original client's Python API (`DataSyncClient`).

May import: app.core, app.hub, app.package, app.observe.
"""
