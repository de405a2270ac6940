# Multi-stage build: dependencies are installed into a venv in the builder, and only the venv
# and the code reach the runtime image, which runs as a non-root user.

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements/ /tmp/requirements/
# av, numpy and scipy ship manylinux wheels (av bundles its FFmpeg), so no compiler is needed.
RUN /opt/venv/bin/pip install -r /tmp/requirements/prod.txt

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
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
# The embedded default: migrate, demo user, Daphne and one worker. For the scaled shape run
# the same image with `python -m project.server -b 0.0.0.0 -p 8000 project.asgi:application` or
# `python manage.py db_worker --queue-name '*'` as the command.
CMD ["python", "manage.py", "serve", "--host", "0.0.0.0"]
