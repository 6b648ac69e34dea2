#!/usr/bin/env bash
# Renders one install YAML per mode (artifacts/overlays/<mode>) into
# _output/manifests/portcullis-<mode>.yaml, with the image of this release:
# IMAGE (default ghcr.io/portcullis-dev/portcullis-server) at tag VERSION
# (default: git describe). The overlays take the image from one place, the
# base's kustomize `images:` entry for ghcr.io/portcullis-dev/portcullis-server;
# this script overrides it the same way (a kustomization over each overlay),
# so what it writes is exactly `kubectl kustomize` of the overlay with
# another image reference.
#
# Needs kubectl (its built-in kustomize). Environment: VERSION, IMAGE, OUT.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

OUT=${OUT:-_output/manifests}
IMAGE=${IMAGE:-ghcr.io/portcullis-dev/portcullis-server}
if [[ -z ${VERSION:-} ]]; then
  VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
fi
# A tag may hold [A-Za-z0-9_.-] only: git describe's "+" would not do.
tag=${VERSION//+/-}

mkdir -p "$OUT"
work=$(mktemp -d "$root/_output/manifests-work.XXXXXX")
trap 'rm -rf "$work"' EXIT
for dir in artifacts/overlays/*/; do
  mode=$(basename "$dir")
  mkdir -p "$work/$mode"
  rel=$(realpath --relative-to="$work/$mode" "$root/$dir")
  cat >"$work/$mode/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $rel
images:
- name: ghcr.io/portcullis-dev/portcullis-server
  newName: $IMAGE
  newTag: "$tag"
YAML
  {
    echo "# Portcullis $VERSION, $mode mode: kubectl kustomize artifacts/overlays/$mode"
    echo "# with the image $IMAGE:$tag. See docs/install.md."
    kubectl kustomize "$work/$mode"
  } >"$OUT/portcullis-$mode.yaml"
  echo ">> $OUT/portcullis-$mode.yaml" >&2
done
