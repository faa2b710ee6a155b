# DataHubSync: syncs hub datasets into /data, on the schedule in crontabs/ (`cron`)
# or once (`sync`). Debian's own Python and libraries keep the image small and
# the build free of pip.
FROM debian:trixie-slim

# Docs, man pages and translations are never read in a container: dpkg skips
# them for every package below (copyright files stay, for the licences).
# Versions are not pinned: the image follows the Debian release's security updates.
# hadolint ignore=DL3008
RUN printf '%s\n' \
        'path-exclude=/usr/share/doc/*' \
        'path-include=/usr/share/doc/*/copyright' \
        'path-exclude=/usr/share/man/*' \
        'path-exclude=/usr/share/info/*' \
        'path-exclude=/usr/share/locale/*' \
        'path-exclude=/usr/share/lintian/*' \
        >/etc/dpkg/dpkg.cfg.d/01-datahubsync-slim \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        python3 \
        python3-prometheus-client \
        python3-requests \
        python3-yaml \
        tini \
        tzdata \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log \
    # The stdlib's regression-test support and help() topics (2.6 MB) are never
    # imported here. Removed after install: python3.13's postinst compiles them.
    && rm -rf /usr/lib/python3.*/test /usr/lib/python3.*/pydoc_data \
    # A fixed numeric user, so Kubernetes' runAsNonRoot can verify it.
    && groupadd --gid 1000 datahubsync \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin datahubsync \
    # A named volume on /data inherits this owner; /config is where compose mounts config.yaml.
    && install -d -o 1000 -g 1000 /data \
    && install -d /config

# No .pyc written at run time (the root filesystem may be read-only); the
# app is compiled at build time below instead.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /app
COPY entrypoint.py ./
COPY app/ ./app/
COPY crontabs/ ./crontabs/

# `datahubsync` on PATH, for crontab lines and `docker exec`; the build fails
# here if the program cannot even start.
RUN printf '%s\n' \
        '#!/usr/bin/python3' \
        'import runpy, sys' \
        'sys.path.insert(0, "/app")' \
        'runpy.run_path("/app/entrypoint.py", run_name="__main__")' \
        >/usr/local/bin/datahubsync \
    && chmod 0755 /usr/local/bin/datahubsync \
    && python3 -m compileall -q /app \
    && python3 /app/entrypoint.py --version \
    && datahubsync --version

USER 1000:1000

# Reads state only (no network): unhealthy after a failed sync, stale data,
# missing settings, or no success within health.grace of the daemon's start.
HEALTHCHECK --interval=1m --timeout=20s --start-period=30s --retries=2 \
    CMD ["datahubsync", "healthcheck"]

ENTRYPOINT ["tini", "--", "python3", "/app/entrypoint.py"]
CMD ["cron"]

ARG VERSION=1.1.0
ARG REVISION=unknown
ARG SOURCE=unknown
ARG LICENSES=NOASSERTION
LABEL org.opencontainers.image.title="datahubsync" \
      org.opencontainers.image.description="Keeps local copies of a data hub's datasets up to date" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="${LICENSES}"
