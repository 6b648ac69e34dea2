#!/usr/bin/env bash
# Builds a release into _output/release:
#   portcullis_<os>_<arch>[.exe]
#       the CLI: static (CGO_ENABLED=0), reproducible binaries for Linux,
#       macOS and Windows on amd64 and arm64 (CLI_PLATFORMS)
#   portcullis-server_<os>_<arch>
#       the server, likewise, for Linux (SERVER_PLATFORMS): it runs as a
#       container or a Linux service, and its break-glass mint socket checks
#       the caller's Unix credentials (SO_PEERCRED), which only Linux has
#   portcullis_<os>_<arch>.tar.gz
#       the CLI alone, for krew and for people who download by hand
#   portcullis.krew.yaml
#       the krew plugin manifest, from artifacts/krew/portcullis.yaml with
#       its placeholders filled in (see below)
#   SHA256SUMS
#       of every file above, in `sha256sum -c` format
#
# Reproducible: the same commit gives the same bytes, wherever it is built
# (same Go version). -trimpath drops the build machine's paths; no build time
# goes into anything (the version's build date and the archives' file times
# are the commit's time); -buildvcs=false because the Go toolchain stamps
# VCS data only in some checkouts (not in a git worktree, not in a source
# tarball): the version, commit and tree state go in through -ldflags from
# git instead, the same way in every checkout.
#
# Placeholders of the krew manifest template (krew-release-bot's):
#   {{ .TagName }}                     the version, e.g. v1.2.3
#   {{addURIAndSha "URL" .TagName }}   `uri: URL` and `sha256: <sum of the
#                                      archive named by URL's base name>`
#
# Environment: VERSION (default: git describe), CLI_PLATFORMS,
# SERVER_PLATFORMS, KREW_TEMPLATE, OUT, and BINARIES_ONLY=1 to build the
# binaries alone (make image does, for Linux).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

GO=${GO:-go}
OUT=${OUT:-_output/release}
CLI_PLATFORMS=${CLI_PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64}
SERVER_PLATFORMS=${SERVER_PLATFORMS:-linux/amd64 linux/arm64}
BINARIES_ONLY=${BINARIES_ONLY:-}
KREW_TEMPLATE=${KREW_TEMPLATE:-artifacts/krew/portcullis.yaml}

if git rev-parse --verify -q HEAD >/dev/null 2>&1; then
  VERSION=${VERSION:-$(git describe --tags --always --dirty)}
  COMMIT=$(git rev-parse HEAD)
  if [[ -z $(git status --porcelain --untracked-files=no) ]]; then TREE=clean; else TREE=dirty; fi
  EPOCH=$(git log -1 --format=%ct)
else
  VERSION=${VERSION:-v0.0.0-dev}
  COMMIT=${COMMIT:-}
  TREE=${TREE:-}
  EPOCH=${SOURCE_DATE_EPOCH:-0}
fi
BUILD_DATE=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)
pkg=k8s.io/component-base/version
LDFLAGS="-s -w -buildid= -X $pkg.gitVersion=$VERSION -X $pkg.gitCommit=$COMMIT -X $pkg.gitTreeState=$TREE -X $pkg.buildDate=$BUILD_DATE"

rm -rf "$OUT"
mkdir -p "$OUT"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

build() { # cmd os/arch
  local cmd=$1 os=${2%/*} arch=${2#*/} ext=""
  [[ $os == windows ]] && ext=.exe
  echo ">> $cmd $VERSION $os/$arch" >&2
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch \
    "$GO" build -trimpath -buildvcs=false -ldflags "$LDFLAGS" \
    -o "$OUT/${cmd}_${os}_${arch}${ext}" "./cmd/$cmd"
}

for platform in $SERVER_PLATFORMS; do
  build portcullis-server "$platform"
done
for platform in $CLI_PLATFORMS; do
  build portcullis "$platform"
done
if [[ -n $BINARIES_ONLY ]]; then
  exit 0
fi

# The CLI's archives: one file each, fixed owner, mode and time.
for platform in $CLI_PLATFORMS; do
  os=${platform%/*} arch=${platform#*/} ext=""
  [[ $os == windows ]] && ext=.exe
  mkdir -p "$stage/$os-$arch"
  cp "$OUT/portcullis_${os}_${arch}${ext}" "$stage/$os-$arch/portcullis${ext}"
  chmod 0755 "$stage/$os-$arch/portcullis${ext}"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" --format=pax \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$stage/$os-$arch" -cf - "portcullis${ext}" | gzip -9n >"$OUT/portcullis_${os}_${arch}.tar.gz"
done

if [[ -f $KREW_TEMPLATE ]]; then
  template=$(realpath "$KREW_TEMPLATE") out=$(realpath "$OUT")
  (cd hack/release && "$GO" run ./krew --template "$template" --version "$VERSION" \
    --dir "$out" --out "$out/portcullis.krew.yaml")
else
  echo "!! $KREW_TEMPLATE does not exist: no krew manifest in this release" >&2
fi

(cd "$OUT" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
echo ">> $OUT:" >&2
cat "$OUT/SHA256SUMS" >&2
