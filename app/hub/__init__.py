"""Talking to the data hub: the HTTP client (credentials for the hub's own origin only, retries),
transport errors told apart by type, the dataset list, package identity, and the resumable,
segmented, verified download (with the background runner that lets extraction start early).

May import: app.core only.
"""
