FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ARTIFACTLOG_HOME=/data

WORKDIR /app

COPY pyproject.toml ./
COPY core ./core
COPY projections ./projections
COPY api ./api
COPY migrations ./migrations
RUN pip install --no-cache-dir . \
    && rm -rf build *.egg-info

# Fixed uid so volume ownership is predictable. A named volume mounted at /data takes the
# ownership set here when it is first created.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/artifactlog artifactlog \
    && mkdir -p /data \
    && chown artifactlog:artifactlog /data
USER artifactlog

EXPOSE 8000

# With DATABASE_URL, NATS_URL and CLICKHOUSE_URL set (compose.yaml), `up` uses those servers;
# without them it runs embedded engines with their data under /data.
CMD ["artifactlog", "up", "--host", "0.0.0.0", "--port", "8000"]
