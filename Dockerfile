# One image for every role: `worker`, `flower`, `emulator`, `submit`, `status`, `dlq`.
#   docker build -t faceswap-jobs .
#   docker run --rm faceswap-jobs --help
#
# The base image by an exact release, never a moving tag such as 3.11-slim. To pin the exact
# bytes too, append the digest (this prints it; the FROM line then reads
# python:3.11.14-slim-bookworm@sha256:<digest>):
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm
FROM python:3.11.14-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed non-root uid, so Kubernetes' runAsNonRoot can check it (see deploy/k8s/).
RUN groupadd --system --gid 10001 faceswap \
 && useradd --system --uid 10001 --gid faceswap --create-home --home-dir /home/faceswap faceswap

# Every dependency at the exact version the tests ran against (constraints.txt says how to
# regenerate it), so two builds of one commit install the same code. With the emulator extra,
# since compose and the staging overlay run the emulator from this image.
COPY constraints.txt pyproject.toml README.md /src/
COPY faceswap_jobs /src/faceswap_jobs
RUN pip install --constraint /src/constraints.txt '/src[emulator]' && rm -rf /src

USER 10001:10001
# Settings also read a `.env` in the working directory; the image ships none.
WORKDIR /home/faceswap

ENTRYPOINT ["faceswap-jobs"]
CMD ["worker"]
