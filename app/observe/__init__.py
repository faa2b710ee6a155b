"""What the team sees without watching: the readiness rule shared by `healthcheck` and `/readyz`,
Prometheus metrics (a collector over the state and per-run counters; textfile and Pushgateway for
one-shot runs), the HTTP listener, and webhook notifications.

May import: app.core only.
"""
