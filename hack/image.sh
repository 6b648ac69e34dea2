#!/usr/bin/env bash
# Builds Portcullis's container image without a Docker daemon: the Linux
# binaries (hack/release.sh, the same reproducible build as a release), then
# hack/release/image (go-containerregistry) writes a multi-arch OCI image
# layout into _output/image. The image has no base image to pull: its first
# layer brings the CA certificates (this machine's bundle), /etc/passwd and
# /etc/group with the nonroot user 65532, /tmp and the nonroot home, as
# distroless/static:nonroot does.
#
# Environment: VERSION (default: git describe), IMAGE (the repository the
# image is meant for), PLATFORMS (default linux/amd64 linux/arm64), OUT.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

GO=${GO:-go}
OUT=${OUT:-_output/image}
IMAGE=${IMAGE:-ghcr.io/portcullis-dev/portcullis-server}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64}
if [[ -z ${VERSION:-} ]]; then
  VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
fi
REVISION=$(git rev-parse HEAD 2>/dev/null || true)
EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo "${SOURCE_DATE_EPOCH:-0}")
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)

bins="$root/_output/image-bin"
VERSION=$VERSION OUT=$bins BINARIES_ONLY=1 SERVER_PLATFORMS="$PLATFORMS" CLI_PLATFORMS="$PLATFORMS" hack/release.sh
(cd hack/release && "$GO" run ./image --binaries "$bins" --platforms "${PLATFORMS// /,}" \
  --version "${VERSION//+/-}" --revision "$REVISION" --created "$CREATED" \
  --repository "$IMAGE" --out "$root/$OUT")
