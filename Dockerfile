# syntax=docker/dockerfile:1
# ttc-gateway: the gateway alone. No vLLM and no model in this image: workers run in their own
# containers (vllm/vllm-openai on GPU, docker/worker-cpu.Dockerfile on CPU).
#
#   docker build -t ttc-gateway:0.1.0 .
#   docker run -p 8000:8000 -v "$PWD/config/gpu.yaml:/etc/ttc/config.yaml:ro" ttc-gateway:0.1.0
#
# The config is read from /etc/ttc/config.yaml (mount it); any key can be overridden with
# TTC_<SECTION>__<KEY> environment variables. See docs/deploy.md.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/ttc
# The build context is an allowlist (.dockerignore): pyproject, README and the packages only.
COPY . .
# No extras: the gateway needs neither vLLM nor torch.
RUN /opt/ttc/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm AS runtime
# 10001: a fixed non-root id, so Kubernetes' runAsNonRoot can verify it from the image.
RUN groupadd --system --gid 10001 ttc \
    && useradd --system --uid 10001 --gid ttc --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin ttc
COPY --from=build /opt/ttc /opt/ttc
# The gateway binds 127.0.0.1 by default; in a container it must listen on every interface.
ENV PATH=/opt/ttc/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TTC_SERVER__HOST=0.0.0.0
USER 10001:10001
EXPOSE 8000
# /health is liveness only (the process answers); /ready (workers reachable) is for routing.
# No curl in the slim image: the healthcheck is the interpreter's urllib. The port follows
# TTC_SERVER__PORT when that is set.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('TTC_SERVER__PORT', '8000'), timeout=4)"]
CMD ["ttc", "serve", "--config", "/etc/ttc/config.yaml"]
