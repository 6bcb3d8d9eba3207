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
    FLEET_HOST=0.0.0.0

WORKDIR /app
# The dependencies, from the project's metadata alone: this layer is rebuilt only when
# pyproject.toml changes, never for an edit of the source. Its runtime requirements and every
# extra but `dev` (an extra naming the project itself is skipped: that is the next step).
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; extras = [d for name, deps in p.get('optional-dependencies', {}).items() if name != 'dev' for d in deps]; print('\n'.join(d for d in p['dependencies'] + extras if not d.startswith(p['name'])))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the source, installed without touching the layer above; `pip check` fails the build if
# that layer missed a requirement.
COPY README.md ./
COPY shared ./shared
COPY supervisor ./supervisor
COPY workers ./workers
RUN pip install --no-deps . \
    && pip check \
    && groupadd --system --gid 10001 fleet \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin fleet

# Numeric, so Kubernetes' runAsNonRoot can tell it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8700 8701

# One healthcheck for every service: FLEET_HEALTH_URL when set; otherwise the supervisor's
# /healthz and a worker's /health on the port the service reads from FLEET_PORT, or its own
# default (supervisor 8700, worker 8701). Only the service this container runs answers 200.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request\nport = os.environ.get('FLEET_PORT')\nurls = [os.environ['FLEET_HEALTH_URL']] if os.environ.get('FLEET_HEALTH_URL') else [f'http://127.0.0.1:{port or 8700}/healthz', f'http://127.0.0.1:{port or 8701}/health']\nfor url in urls:\n    try:\n        urllib.request.urlopen(url, timeout=2)\n        sys.exit(0)\n    except OSError:\n        pass\nsys.exit('unhealthy: no 200 from ' + ' nor '.join(urls))"]

# Binding 0.0.0.0 needs FLEET_API_TOKENS (or FLEET_INSECURE=1): the supervisor refuses otherwise.
CMD ["fleet", "supervisor", "--host", "0.0.0.0"]
