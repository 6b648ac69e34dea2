#!/usr/bin/env bash
# Regenerates the code generated from the API types of pkg/apis/login:
#   - DeepCopy functions (k8s.io/code-generator's deepcopy-gen), and
#   - OpenAPI definitions (k8s.io/kube-openapi's openapi-gen), which the
#     generic apiserver needs to serve /openapi/v2 and /openapi/v3 and to
#     build the managed-fields type converter.
# The generators run with `go run` at the versions matching the k8s.io
# modules of go.mod, so nothing is installed. `hack/update-codegen.sh --verify`
# fails if the generated files are out of date (for CI).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

module=$(go list -m)
k8s_version=$(go list -m -f '{{.Version}}' k8s.io/apimachinery)
openapi_version=$(go list -m -f '{{.Version}}' k8s.io/kube-openapi)
header=hack/boilerplate.go.txt

api_pkgs=(./pkg/apis/login/v1alpha1)
openapi_dir=pkg/apis/login/openapi
# Types the group's types refer to need definitions in the same set.
openapi_deps=(
  k8s.io/apimachinery/pkg/apis/meta/v1
  k8s.io/apimachinery/pkg/runtime
  k8s.io/apimachinery/pkg/version
)

out=$root
verify=false
if [[ ${1:-} == --verify ]]; then
  verify=true
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  mkdir -p "$out/$openapi_dir"
  for p in "${api_pkgs[@]}"; do mkdir -p "$out/$p"; done
fi

echo ">> deepcopy-gen (k8s.io/code-generator $k8s_version)" >&2
go run "k8s.io/code-generator/cmd/deepcopy-gen@$k8s_version" \
  --go-header-file "$header" \
  --output-file zz_generated.deepcopy.go \
  "${api_pkgs[@]}"

echo ">> openapi-gen (k8s.io/kube-openapi $openapi_version)" >&2
go run "k8s.io/kube-openapi/cmd/openapi-gen@$openapi_version" \
  --go-header-file "$header" \
  --output-dir "$out/$openapi_dir" \
  --output-pkg "$module/$openapi_dir" \
  --output-file zz_generated.openapi.go \
  --report-filename "$out/$openapi_dir/api-violations.report" \
  "${openapi_deps[@]}" "${api_pkgs[@]}"

# The report lists API rule violations; ours must have none (the apimachinery
# packages' own are theirs).
if grep -F "$module/" "$out/$openapi_dir/api-violations.report"; then
  echo "openapi-gen reports API rule violations in $module (above): fix the types" >&2
  exit 1
fi
rm -f "$out/$openapi_dir/api-violations.report"

if $verify; then
  # deepcopy-gen writes next to the types; compare it with git's version.
  status=0
  for p in "${api_pkgs[@]}"; do
    if ! git diff --quiet -- "$p/zz_generated.deepcopy.go"; then
      echo "$p/zz_generated.deepcopy.go is out of date: run hack/update-codegen.sh" >&2
      status=1
    fi
  done
  if ! diff -q "$out/$openapi_dir/zz_generated.openapi.go" "$openapi_dir/zz_generated.openapi.go" >/dev/null; then
    echo "$openapi_dir/zz_generated.openapi.go is out of date: run hack/update-codegen.sh" >&2
    status=1
  fi
  exit $status
fi
