# The callhub image: `callhub serve` by default; the same image runs workers
# (`callhub worker ...`), forwarders and every other sub-command.
#
# Two stages: the builder turns the source into a wheel and installs it into a
# virtualenv; the runtime stage copies only that virtualenv (callhub and its
# dependencies, installed), so no source tree, build/ or *.egg-info ships.

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# What building the wheel needs, nothing else (.dockerignore keeps the rest out).
COPY pyproject.toml README.md ./
COPY callhub ./callhub
COPY hub ./hub
COPY workers ./workers
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/callhub \
    && /opt/callhub/bin/pip install /wheels/callhub-*.whl

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/callhub/bin:$PATH
# Same base image, same interpreter path: the virtualenv runs as it was built.
COPY --from=builder /opt/callhub /opt/callhub
# A system user with a real home (HOME=/home/callhub), owning nothing else.
RUN useradd --system --uid 10001 --create-home --home-dir /home/callhub \
        --shell /usr/sbin/nologin callhub
USER callhub
WORKDIR /home/callhub
EXPOSE 8080

# The slim image has no curl: ask /healthz with the standard library.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]

# 0.0.0.0: reachable by the load balancer on the container network.
CMD ["callhub", "serve", "--host", "0.0.0.0", "--port", "8080"]
