# One image for every role: `worker`, `flower`, `emulator`, `submit`, `status`, `dlq`.
#   docker build -t faceswap-jobs .
#   docker run --rm faceswap-jobs --help
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed non-root uid, so Kubernetes' runAsNonRoot can check it (see deploy/k8s/).
RUN groupadd --system --gid 10001 faceswap \
 && useradd --system --uid 10001 --gid faceswap --create-home --home-dir /home/faceswap faceswap

COPY pyproject.toml README.md /src/
COPY faceswap_jobs /src/faceswap_jobs
RUN pip install /src && rm -rf /src

USER 10001:10001
# Settings also read a `.env` in the working directory; the image ships none.
WORKDIR /home/faceswap

ENTRYPOINT ["faceswap-jobs"]
CMD ["worker"]
