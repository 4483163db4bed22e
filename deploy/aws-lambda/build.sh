#!/usr/bin/env bash
# Build the rotation Lambda's zip: the handler's package at the zip root, its dependencies for
# the Lambda runtime (Python 3.12 on arm64 unless told otherwise), and the rotation policy as
# rotation.toml (KEYVAULT_POLICY=/var/task/rotation.toml in template.yaml).
#
#   deploy/aws-lambda/build.sh policies/rotation.toml          # -> deploy/aws-lambda/build/keyvault-rotation.zip
#   LAMBDA_ARCH=x86_64 LAMBDA_PYTHON=3.12 deploy/aws-lambda/build.sh policies/rotation.toml
#   deploy/aws-lambda/build.sh --no-deps policies/rotation.toml   # keyvault only (layout check)
#
# zip layout:
#   keyvault/...                  the package (keyvault.integrations.aws_lambda.handler)
#   rotation.toml                 the policy (sources and durations only, never a key)
#   boto3/ botocore/ httpx/ ...   dependencies, built for the Lambda platform
set -euo pipefail

deps=1
if [ "${1:-}" = "--no-deps" ]; then deps=0; shift; fi
policy="${1:?usage: build.sh [--no-deps] POLICY_FILE}"
python="${PYTHON:-python3}"
arch="${LAMBDA_ARCH:-arm64}"
pyver="${LAMBDA_PYTHON:-3.12}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${BUILD_DIR:-$here/build}"
pkg="$out/pkg"

[ -f "$policy" ] || { echo "build.sh: policy file $policy not found" >&2; exit 2; }
"$python" -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$policy" \
  || { echo "build.sh: $policy is not valid TOML" >&2; exit 2; }

rm -rf "$pkg" && mkdir -p "$pkg"
if [ "$deps" = 1 ]; then
  case "$arch" in
    arm64) platform=manylinux2014_aarch64 ;;
    x86_64) platform=manylinux2014_x86_64 ;;
    *) echo "build.sh: LAMBDA_ARCH must be arm64 or x86_64" >&2; exit 2 ;;
  esac
  # the runtime dependencies of keyvault[aws], as pyproject.toml declares them
  mapfile -t requirements < <("$python" - "$root/pyproject.toml" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for req in project["dependencies"] + project["optional-dependencies"]["aws"]:
    print(req)
PY
)
  "$python" -m pip install --quiet --target "$pkg" --platform "$platform" --implementation cp \
    --python-version "$pyver" --only-binary=:all: "${requirements[@]}"
fi
# keyvault itself from this checkout, without its test helpers
(cd "$root" && tar --exclude='__pycache__' --exclude='keyvault/testing' -cf - keyvault) | (cd "$pkg" && tar -xf -)
cp "$policy" "$pkg/rotation.toml"
chmod -R a+rX "$pkg"
rm -f "$out/keyvault-rotation.zip"
(cd "$pkg" && "$python" -m zipfile -c "$out/keyvault-rotation.zip" *)
echo "$out/keyvault-rotation.zip"
