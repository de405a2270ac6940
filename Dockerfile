# Multi-stage build: dependencies are installed into a venv in the builder, and only the venv
# and the code reach the runtime image, which runs as a non-root user.

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements/ /tmp/requirements/
# av, numpy and scipy ship manylinux wheels (av bundles its FFmpeg), so no compiler is needed.
RUN /opt/venv/bin/pip install -r /tmp/requirements/prod.txt

FROM python:3.11-slim
# Production mode by default: no debug, HSTS and HTTPS redirect (behind a TLS proxy, set
# DJANGO_SECURE_PROXY_SSL_HEADER), and no demo user unless DEMO_PASSWORD is given.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_PRODUCTION=1 \
    DATA_DIR=/data
RUN useradd --create-home --uid 10001 app \
    && mkdir -p /data \
    && chown app:app /data
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY manage.py ./
COPY project/ project/
COPY tasks_app/ tasks_app/
USER app
# SQLite database and media of the embedded default; unused when DATABASE_URL and MEDIA_ROOT
# point elsewhere.
VOLUME ["/data"]
EXPOSE 8000
# Every command answers /healthz on port 8000 except `worker`: override or disable the check
# for worker containers (docker run --no-healthcheck). `healthcheck` loads no audio stack (numpy,
# scipy, PyAV; tests/test_commands.py checks it), so it starts in about a second, well inside the
# timeout on a busy host (bench/command_startup.py).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "manage.py", "healthcheck", "--url", "http://127.0.0.1:8000/healthz"]
# One image, three process commands:
#   serve   (default) the embedded shape: migrate, then Daphne and one worker, restarted on crash
#   web     Daphne only, for the scaled shape behind a load balancer
#   worker  a job worker, for the scaled shape (as many as you like, anywhere)
CMD ["python", "manage.py", "serve", "--host", "0.0.0.0"]
