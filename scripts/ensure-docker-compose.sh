#!/usr/bin/env bash
# Installs Debian's docker-compose (1.29) when it is missing: the tests use
# `docker-compose config -q` to validate environment/compose.yaml, which
# needs no Docker engine.
set -euo pipefail
if command -v docker-compose >/dev/null 2>&1; then
  exit 0
fi
echo "docker-compose is not installed: installing it with apt-get"
"$(dirname "$0")/apt-install.sh" docker-compose
docker-compose version
