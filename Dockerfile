# consentbot's image: `docker build -t consentbot .`, or `docker compose up -d` with compose.yaml
# (docs/deploy.md). Python 3.13, the newest supported: the version .ci/run runs the whole suite on.
# Dependencies are installed pinned and hash-checked from the lock (requirements/run.txt, exported
# from uv.lock by `make lock`): the runtime and the slack, teams and postgres extras, no dev tools.

FROM python:3.13-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/consentbot
COPY requirements/run.txt /tmp/requirements-run.txt
RUN /opt/consentbot/bin/pip install --require-hashes -r /tmp/requirements-run.txt
COPY pyproject.toml README.md /src/
COPY bot /src/bot
COPY handlers /src/handlers
COPY storage /src/storage
# --no-deps: everything it needs came from the lock above; this adds consentbot itself only.
RUN /opt/consentbot/bin/pip install --no-deps /src

FROM python:3.13-slim
# A system user with no login shell and a home for nothing but its working folder.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/consentbot --create-home \
        --shell /usr/sbin/nologin consentbot
COPY --from=build /opt/consentbot /opt/consentbot
# Settings come from the environment only (compose.yaml, or `docker run --env-file`): no settings
# file is read, so a stray .env in the working folder cannot change them.
ENV PATH=/opt/consentbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONSENTBOT_ENV=production \
    CONSENTBOT_ENV_FILE=/dev/null \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /var/lib/consentbot
USER consentbot
EXPOSE 3000
# Liveness: the process answers. Readiness (database reachable, migrations current) is /readyz,
# which compose.yaml checks. The slim image has no curl: Python's own client.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]
# SIGTERM: serve stops taking requests, then sends what is left in the outbox (CONSENTBOT_SHUTDOWN_SECONDS).
STOPSIGNAL SIGTERM
CMD ["consentbot", "serve"]
