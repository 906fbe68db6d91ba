#!/usr/bin/env bash
# Installs what the real-viewer test (tests/integration/test_ohif_viewer.py) needs from npm,
# into tools/viewer/ (git-ignored folders; nothing outside the repository):
#   tools/viewer/node_modules/   puppeteer-core, pinned with tools/viewer/package-lock.json
#                                (`npm ci`; it never downloads a browser: Debian's chromium is used)
#   tools/viewer/ohif-3.13.2/    the prebuilt OHIF viewer: the `dist/` folder of the npm package
#                                @ohif/app 3.13.2, fetched with `npm pack` and checked against its
#                                registry SHA-512 below (its ~1000 build-time dependencies are not needed)
# Needs node and npm (Debian: nodejs, npm) and the npm registry. Idempotent: does nothing when
# both are in place at the pinned versions.
set -euo pipefail
cd "$(dirname "$0")/../tools/viewer"

OHIF_VERSION=3.13.2
OHIF_INTEGRITY="sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
OHIF_DIR="ohif-${OHIF_VERSION}"

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-viewer: $tool is missing; install it (Debian: apt-get install -y nodejs npm)" >&2
        exit 1
    fi
done

# 1. puppeteer-core, exactly as package-lock.json pins it
if ! cmp -s package-lock.json node_modules/.gazex-installed-lock 2>/dev/null; then
    echo "install-viewer: installing puppeteer-core (npm ci)"
    PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.gazex-installed-lock
else
    echo "install-viewer: puppeteer-core is installed"
fi

# 2. OHIF's prebuilt dist/
if [ -f "${OHIF_DIR}/.integrity" ] && [ "$(cat "${OHIF_DIR}/.integrity")" = "$OHIF_INTEGRITY" ] \
    && [ -f "${OHIF_DIR}/dist/index.html" ]; then
    echo "install-viewer: OHIF ${OHIF_VERSION} is installed"
    exit 0
fi
echo "install-viewer: fetching @ohif/app@${OHIF_VERSION} (npm pack)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tarball="$(npm pack "@ohif/app@${OHIF_VERSION}" --pack-destination "$work" --silent --loglevel=error | tail -n 1)"
actual="sha512-$(node -e 'const c=require("crypto"),f=require("fs");process.stdout.write(c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$work/$tarball")"
if [ "$actual" != "$OHIF_INTEGRITY" ]; then
    echo "install-viewer: @ohif/app@${OHIF_VERSION} does not match its pinned SHA-512 ($actual)" >&2
    exit 1
fi
tar -xzf "$work/$tarball" -C "$work" package/dist
rm -rf "$OHIF_DIR"
mkdir -p "$OHIF_DIR"
mv "$work/package/dist" "$OHIF_DIR/dist"
echo "$OHIF_INTEGRITY" >"$OHIF_DIR/.integrity"
echo "install-viewer: OHIF ${OHIF_VERSION} installed in tools/viewer/${OHIF_DIR}/dist"
