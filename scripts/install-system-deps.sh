#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, when they are missing:
#   dcmtk        storescu, storescp, echoscu, dcmdump, dsrdump, dcmpschk
#   dicom3tools  dciodvfy
#   orthanc      Orthanc, the PACS used in the round-trip tests
#   orthanc-dicomweb  Orthanc's DICOMweb plugin, which the real-viewer test's OHIF reads from
#   chromium     the browser the real-viewer test drives (puppeteer-core; never a downloaded one)
#   nodejs, npm  node runs that test's browser script; npm installs OHIF and puppeteer-core
#                (scripts/install-viewer.sh, from `make tools`)
#   systemd      systemd-analyze, which verifies the systemd unit in deploy/systemd
# Safe to run repeatedly; it does nothing when everything is present.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=()
have storescu || missing+=(dcmtk)
have dciodvfy || missing+=(dicom3tools)
have Orthanc || missing+=(orthanc)
have systemd-analyze || missing+=(systemd)
have_plugin() { ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so* /usr/lib/orthanc/libOrthancDicomWeb.so* >/dev/null 2>&1; }
have_plugin || missing+=(orthanc-dicomweb)
have chromium || missing+=(chromium)
have node || missing+=(nodejs)
have npm || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
    echo "system packages: dcmtk, dicom3tools, orthanc, orthanc-dicomweb, chromium, nodejs, npm and systemd are installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "system packages missing: ${missing[*]}" >&2
    echo "run as root, or install them yourself: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
