#!/usr/bin/env bash
# Installs Debian packages quietly, through sudo unless already root. The
# ensure-*.sh scripts call it once they found their tool missing.
set -euo pipefail
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
