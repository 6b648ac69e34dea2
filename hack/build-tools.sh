#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, etcd, Dex) from Go modules into
# _output/bin. Each binary is keyed by its version, so a rebuild only happens when
# a version changes; the Go build cache makes even that fast after the first time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/_output/bin"
mkdir -p "$bin"

KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
DEX_VERSION=v2.41.1

build() { # name version dir pkg [ldflags]
  local name=$1 version=$2 dir=$3 pkg=$4 ldflags=${5:-}
  local out="$bin/$name-$version"
  if [[ -x "$out" ]]; then
    ln -sf "$name-$version" "$bin/$name"
    return
  fi
  echo ">> building $name $version (first time takes minutes; cached afterwards)" >&2
  (cd "$root/hack/tools/$dir" && go build -ldflags "$ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  ln -sf "$name-$version" "$bin/$name"
}

what=${1:-all}
if [[ $what == all || $what == etcd ]]; then
  build etcd "$ETCD_VERSION" etcd go.etcd.io/etcd/server/v3
fi
if [[ $what == all || $what == dex ]]; then
  build dex "$DEX_VERSION" dex github.com/dexidp/dex/cmd/dex
fi
if [[ $what == all || $what == kube-apiserver ]]; then
  build kube-apiserver "$KUBE_VERSION" kube k8s.io/kubernetes/cmd/kube-apiserver \
    "-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
fi
