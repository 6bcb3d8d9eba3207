# One image for every service of the fleet: the supervisor (default) and each example worker.
#   docker build -t mcp-fleet .
#   docker run --rm -p 127.0.0.1:8700:8700 -e FLEET_API_TOKENS=secret mcp-fleet
#   docker run --rm -e FLEET_WORKER_TOKEN=secret mcp-fleet python -m workers.data --host 0.0.0.0 --port 8701
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FASTMCP_CHECK_FOR_UPDATES=off \
    FASTMCP_SHOW_SERVER_BANNER=false \
    FLEET_LOG_FORMAT=json \
    FLEET_HOST=0.0.0.0 \
    FLEET_PORT=8700

WORKDIR /app
# Metadata first so the dependency layer is cached while only the source changes.
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY supervisor ./supervisor
COPY workers ./workers
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin fleet

USER fleet
EXPOSE 8700 8701

# The supervisor's liveness; worker services override it with their own /health probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FLEET_PORT', '8700'), timeout=3)"

# Binding 0.0.0.0 needs FLEET_API_TOKENS (or FLEET_INSECURE=1): the supervisor refuses otherwise.
CMD ["fleet", "supervisor", "--host", "0.0.0.0"]
