#!/usr/bin/env bash
# Regenerates the code generated from the API types of pkg/apis/login:
#   - DeepCopy functions (k8s.io/code-generator's deepcopy-gen), and
#   - OpenAPI definitions and model names (k8s.io/kube-openapi's
#     openapi-gen), which the generic apiserver needs to serve /openapi/v2
#     and /openapi/v3 and to build the managed-fields type converter (the
#     model names tie each definition to its group, version and kind).
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

generated=(pkg/apis/login/v1alpha1/zz_generated.deepcopy.go pkg/apis/login/v1alpha1/zz_generated.model_name.go "$openapi_dir/zz_generated.openapi.go")
verify=false
if [[ ${1:-} == --verify ]]; then
  verify=true
  saved=$(mktemp -d)
  trap 'rm -rf "$saved"' EXIT
  for f in "${generated[@]}"; do mkdir -p "$saved/$(dirname "$f")"; cp "$f" "$saved/$f" 2>/dev/null || true; done
fi

echo ">> deepcopy-gen (k8s.io/code-generator $k8s_version)" >&2
go run "k8s.io/code-generator/cmd/deepcopy-gen@$k8s_version" \
  --go-header-file "$header" \
  --output-file zz_generated.deepcopy.go \
  "${api_pkgs[@]}"

echo ">> openapi-gen (k8s.io/kube-openapi $openapi_version)" >&2
report=$(mktemp)
go run "k8s.io/kube-openapi/cmd/openapi-gen@$openapi_version" \
  --go-header-file "$header" \
  --output-dir "$openapi_dir" \
  --output-pkg "$module/$openapi_dir" \
  --output-file zz_generated.openapi.go \
  --output-model-name-file zz_generated.model_name.go \
  --report-filename "$report" \
  --readonly-pkg "$(IFS=,; echo "${openapi_deps[*]}")" \
  "${openapi_deps[@]}" "${api_pkgs[@]}"

# The report lists API rule violations; ours must have none (those of the
# apimachinery packages are theirs).
if grep -F "$module/" "$report" >&2; then
  rm -f "$report"
  echo "openapi-gen reports API rule violations in $module (above): fix the types" >&2
  exit 1
fi
rm -f "$report"

if $verify; then
  status=0
  for f in "${generated[@]}"; do
    if ! cmp -s "$f" "$saved/$f"; then
      echo "$f was out of date (now regenerated): commit the regenerated file" >&2
      status=1
    fi
  done
  exit $status
fi
