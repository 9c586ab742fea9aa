# hcgw container image.
#
#   podman build --format docker -t hcgw .        (or: docker build -t hcgw .)
#
#   podman run --rm hcgw token new my-app      # a caller's token and its SHA-256
#   podman run --rm -p 127.0.0.1:8080:8080 \
#       -e HCGW_API_KEY_FILE=/run/secrets/helpcrunch-api-key \
#       -v ./helpcrunch-api-key:/run/secrets/helpcrunch-api-key:ro \
#       -v ./my-app.sha256:/run/secrets/hcgw-client.sha256:ro hcgw
#   curl -H "Authorization: Bearer <token>" http://127.0.0.1:8080/contacts/1568834
#
# Two stages. The build stage installs the toolchain with the project's own script, builds the
# release preset and runs the unit tests: an image is never made from code whose tests fail.
# The runtime stage holds only the two stripped binaries (hcgw, and the HelpCrunch simulator
# hcgw-sim for local runs and tests), their runtime libraries, CA certificates and the
# container configuration (deploy/container/hcgw.conf: listens on 0.0.0.0:8080 and admits the
# client whose token's SHA-256 is mounted at /run/secrets/hcgw-client.sha256). It runs as a
# fixed non-root UID/GID, 10001, and needs no writable file: it runs with a read-only root
# filesystem.
#
# The HelpCrunch API key is never in the image: it comes at run time from HCGW_API_KEY or from
# a mounted file named by HCGW_API_KEY_FILE (see docs/deployment.md, "Container").

############################### build and test ################################
FROM debian:bookworm-slim AS build
# Marks this stage's leftover images, so that the container test can prune stale ones.
LABEL io.hcgw.stage="build"
WORKDIR /src
# The package list changes far less often than the code: its layer stays cached.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
# .git is not in the build context: `--build-arg HCGW_COMMIT=$(git rev-parse --short=12 HEAD)`.
ARG HCGW_COMMIT=unknown
RUN cmake --preset release -DHCGW_COMMIT="$HCGW_COMMIT" >/dev/null \
    && cmake --build --preset release -j"$(nproc)" \
    && ctest --test-dir build/release -L unit --output-on-failure -j"$(nproc)" \
    && mkdir -p /out \
    && install -s -m 0755 build/release/hcgw build/release/hcgw-sim /out/ \
    && rm -rf build

################################## runtime ####################################
FROM debian:bookworm-slim
# No documentation, manual pages or translations from the packages: nobody reads them here.
RUN printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
        'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' \
        'path-exclude=/usr/share/locale/*' 'path-exclude=/usr/share/lintian/*' \
        >/etc/dpkg/dpkg.cfg.d/01-hcgw-nodoc \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libmicrohttpd12 libgnutls30 libcurl4 libjson-c5 libconfig9 libhiredis0.14 ca-certificates \
        >/dev/null \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
    && groupadd --gid 10001 hcgw \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --comment "hcgw gateway" hcgw
COPY --from=build /out/hcgw /out/hcgw-sim /usr/local/bin/
COPY deploy/container/hcgw.conf /etc/hcgw/hcgw.conf

LABEL org.opencontainers.image.title="hcgw" \
      org.opencontainers.image.description="A gateway in front of the HelpCrunch REST API" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
# hcgw drains on SIGTERM (server.drain_timeout_ms, 10 s here) and exits 0: give `stop` more
# time than that (podman stop -t 15, terminationGracePeriodSeconds in Kubernetes).
STOPSIGNAL SIGTERM
# hcgw's own probe: the image has no curl or shell tools to spare.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/hcgw", "--probe", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/hcgw"]
CMD ["-c", "/etc/hcgw/hcgw.conf"]
