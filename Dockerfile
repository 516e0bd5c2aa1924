# The callhub image: `callhub serve` by default; the same image runs workers
# (`callhub worker ...`) and every other sub-command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# What `pip install .` needs, nothing else (.dockerignore keeps the rest out).
COPY pyproject.toml README.md ./
COPY callhub ./callhub
COPY hub ./hub
COPY workers ./workers
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin callhub

USER callhub
EXPOSE 8080

# The slim image has no curl: ask /healthz with the standard library.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]

# 0.0.0.0: reachable by the load balancer on the container network.
CMD ["callhub", "serve", "--host", "0.0.0.0", "--port", "8080"]
