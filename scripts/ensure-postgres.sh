#!/usr/bin/env bash
# Installs PostgreSQL's server programs from Debian's packages when they are
# missing. Tests and `shopstream dev` start their own throwaway clusters.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
  exit 0
fi
echo "PostgreSQL is not installed: installing it with apt-get"
"$(dirname "$0")/apt-install.sh" postgresql
ls /usr/lib/postgresql/*/bin/initdb
