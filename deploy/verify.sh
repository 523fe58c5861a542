#!/usr/bin/env bash
# Check the systemd units: `systemd-analyze verify` on copies whose ExecStart= and
# EnvironmentFile= point at this checkout's real programs (verify insists they exist), then
# `systemd-analyze security --offline` for the exposure scores; then verify again with the
# PostgreSQL drop-ins (*.service.d/postgresql.conf) loaded. Fails on any warning.
# Usage: deploy/verify.sh [VENV_BIN]   (default: .venv/bin of this checkout)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/.venv/bin}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for unit in reev-ingestd reev-api; do
  sed -e "s|/opt/reev-ingest/.venv/bin|$bin|" \
      -e "s|/etc/reev-ingest/reev-ingest.env|$root/deploy/systemd/reev-ingest.env|" \
      "$root/deploy/systemd/$unit.service" > "$work/$unit.service"
done
cd "$work"
out=$(systemd-analyze verify reev-ingestd.service reev-api.service 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
  echo "systemd-analyze verify warned:"; echo "$out"; exit 1
fi
echo "systemd-analyze verify: no warnings"
for unit in reev-ingestd reev-api; do
  systemd-analyze security --offline=true "$unit.service" 2>/dev/null | tail -1
done
cp -r "$root"/deploy/systemd/*.service.d "$work"/
out=$(SYSTEMD_UNIT_PATH="$work:" systemd-analyze verify reev-ingestd.service reev-api.service 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
  echo "systemd-analyze verify with the PostgreSQL drop-ins warned:"; echo "$out"; exit 1
fi
echo "systemd-analyze verify with the PostgreSQL drop-ins: no warnings"
