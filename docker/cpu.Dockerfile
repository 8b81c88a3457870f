# CPU image of cosmictagger-tf, installed through the project's own install script.
# Build from the repository root:  docker build -f docker/cpu.Dockerfile -t cosmictagger-tf:cpu .
FROM python:3.11-slim-bookworm

# Debian's package versions change with every point release, so the compilers are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ cmake make git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/cosmictagger-tf
COPY . .
RUN bash scripts/install.sh /opt/venv && rm -rf /root/.cache/pip
ENV PATH=/opt/venv/bin:$PATH

ENTRYPOINT ["python", "-m", "cosmictagger_tf.train"]
CMD ["--flagfile=flags/cpu_smoke"]
