#!/usr/bin/env bash
# Installs Prometheus' promtool when it is missing: the tests run
# `promtool check rules` and `promtool test rules` over dashboards/ (Debian's
# prometheus package ships /usr/bin/promtool; the server is not started).
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
echo "promtool is not installed: installing Debian's prometheus package with apt-get"
"$(dirname "$0")/apt-install.sh" prometheus
# The package starts a Prometheus server where an init system runs; the
# tests need only the tool.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
promtool --version | head -1
