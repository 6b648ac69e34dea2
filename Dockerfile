# syntax=docker/dockerfile:1
# The same image as `make image` (hack/release/image, no Docker daemon
# needed), for people who build with Docker: static binaries on
# distroless/static, run as the nonroot user 65532, same entrypoint,
# arguments and paths (hack/release/image's TestDockerfileDescribesTheSameImage
# checks that they stay the same).
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg COMMIT=$(git rev-parse HEAD) \
#     --build-arg BUILD_DATE=$(date -u -d @$(git log -1 --format=%ct) +%Y-%m-%dT%H:%M:%SZ) \
#     -t ghcr.io/portcullis-dev/portcullis-server:$(git describe --tags --always --dirty) .

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Module downloads are cached apart from the sources.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
ARG VERSION=v0.0.0-dev
ARG COMMIT=
ARG BUILD_DATE=1970-01-01T00:00:00Z
ARG TARGETOS=linux
ARG TARGETARCH=amd64
# The flags of hack/release.sh: static, -trimpath, no build ID or VCS stamp
# that would differ between checkouts; the version through -ldflags.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -buildid= -X k8s.io/component-base/version.gitVersion=${VERSION} -X k8s.io/component-base/version.gitCommit=${COMMIT} -X k8s.io/component-base/version.buildDate=${BUILD_DATE}" \
      -o /out/ ./cmd/portcullis-server ./cmd/portcullis \
 && mkdir -p /out/state

# distroless/static: no shell, no package manager, CA certificates and
# /etc/passwd with the nonroot user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/portcullis-server /out/portcullis /usr/local/bin/
# State (signing keys, sessions) and the self-signed serving certificate live
# here, on a volume; the root filesystem can be read-only.
COPY --from=build --chown=65532:65532 --chmod=700 /out/state /var/lib/portcullis
USER 65532:65532
VOLUME ["/var/lib/portcullis"]
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/portcullis-server"]
CMD ["--config=/etc/portcullis/config.yaml", "--cert-dir=/var/lib/portcullis/certs"]
