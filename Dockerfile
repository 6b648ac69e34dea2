# syntax=docker/dockerfile:1
# Multi-stage build: static binaries in a distroless, non-root image.
# Build: docker build -t portcullis:dev --build-arg VERSION=$(git describe --always) .

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Module downloads are cached apart from the sources.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
ARG VERSION=v0.0.0-dev
ARG TARGETOS=linux
ARG TARGETARCH=amd64
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${VERSION}" \
      -o /out/ ./cmd/portcullis-server ./cmd/portcullis

# distroless/static: no shell, no package manager, CA certificates and
# /etc/passwd with the nonroot user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/portcullis-server /out/portcullis /usr/local/bin/
USER 65532:65532
# State (signing keys, sessions) and the self-signed serving certificate live
# on a volume; the root filesystem can be read-only.
VOLUME ["/var/lib/portcullis"]
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/portcullis-server"]
CMD ["--config=/etc/portcullis/config.yaml", "--cert-dir=/var/lib/portcullis/certs"]
