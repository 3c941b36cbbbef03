# One image for every role: master, secondary, echo-server, echo-client.
#   docker build -t replog .
#   docker run -p 5000:5000 replog master
# Build stage: the official Swift image compiles a release binary with the Swift
# runtime linked in statically, so the runtime stage needs no Swift toolchain.
ARG SWIFT_IMAGE=swift:6.2-noble
FROM ${SWIFT_IMAGE} AS build
WORKDIR /src
# Resolve dependencies in their own layer so source edits do not refetch them.
COPY Package.swift ./
RUN swift package resolve
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --product replog --static-swift-stdlib \
    && install -D "$(swift build -c release --show-bin-path)/replog" /out/replog

FROM ubuntu:noble
# curl serves the HEALTHCHECK; libstdc++ is the one runtime library the binary links.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home replog \
    && mkdir /data /secrets && chown 10001 /data /secrets
COPY --from=build /out/replog /usr/local/bin/replog
USER 10001
# Listen on every interface inside the container; the port comes from REPLOG_PORT.
# Mount a volume on /data and set REPLOG_DATA_DIR=/data to keep the log across restarts.
ENV REPLOG_HOST=0.0.0.0
VOLUME ["/data"]
EXPOSE 5000 5001 5002 8080
HEALTHCHECK --interval=5s --timeout=2s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${REPLOG_PORT:-5000}/health" || exit 1
ENTRYPOINT ["replog"]
CMD ["master"]
