# syntax=docker/dockerfile:1
# `llama serve` in a container: built in the official Swift image, run in plain Ubuntu as a
# non-root user. The model is mounted at /models or pulled there at start (deploy/entrypoint.sh):
#   docker build -t swift-llama .
#   docker run -p 8080:8080 -v llama-models:/models -e LLAMA_HF=bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M swift-llama
ARG SWIFT_VERSION=6.3
ARG UBUNTU_VERSION=24.04

FROM swift:${SWIFT_VERSION}-noble AS build
WORKDIR /src
COPY . .
RUN deploy/build.sh /out

FROM ubuntu:${UBUNTU_VERSION}
# CA certificates for pulls from Hugging Face; nothing else: Swift's runtime is in the binary.
# (Unpinned: the distribution's current certificates are the ones wanted.)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /home/llama llama \
    && mkdir -p /models && chown llama /models
COPY --from=build /out/bin/ /usr/local/bin/
USER 10001
ENV LLAMA_CACHE=/models PORT=8080
VOLUME /models
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/llama-entrypoint"]
