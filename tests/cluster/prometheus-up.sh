#!/usr/bin/env bash
# A real Prometheus on the loopback, loaded with series from an OpenMetrics file, for the
# accounting tests (tests/unit/test_prometheus.py) and for trying the prometheus source by hand.
#
#   tests/cluster/prometheus-up.sh start FILE.om WORKDIR PORT   backfill FILE.om, start, wait
#   tests/cluster/prometheus-up.sh stop WORKDIR                  stop the one started there
#
# Debian's package (prometheus, promtool) is installed when missing, which needs root. There
# is no systemd here: the binary is started directly, on 127.0.0.1 only, with its storage in
# WORKDIR (no scrape targets: only the backfilled blocks), and its pid in WORKDIR/prometheus.pid.
set -euo pipefail

log() { echo "[prometheus-up] $*" >&2; }

stop() {
  local dir=$1
  if [ -f "$dir/prometheus.pid" ]; then
    local pid
    pid=$(cat "$dir/prometheus.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$dir/prometheus.pid"
    log "stopped pid $pid"
  fi
}

start() {
  local om=$1 dir=$2 port=$3
  if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    [ "$(id -u)" = 0 ] || { log "prometheus is not installed and installing it needs root"; exit 2; }
    log "installing Debian's prometheus"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  fi
  mkdir -p "$dir/data"
  promtool tsdb create-blocks-from openmetrics "$om" "$dir/data" >"$dir/backfill.log" 2>&1 \
    || { cat "$dir/backfill.log" >&2; exit 1; }
  cat >"$dir/prometheus.yml" <<CONF
global:
  scrape_interval: 1m
scrape_configs: []
CONF
  prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --storage.tsdb.retention.time=100y --web.listen-address="127.0.0.1:$port" \
    >"$dir/prometheus.log" 2>&1 &
  echo $! >"$dir/prometheus.pid"
  for _ in $(seq 300); do
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
        "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1; then
      log "ready on http://127.0.0.1:$port (pid $(cat "$dir/prometheus.pid"))"
      echo "http://127.0.0.1:$port"
      return 0
    fi
    kill -0 "$(cat "$dir/prometheus.pid")" 2>/dev/null || { cat "$dir/prometheus.log" >&2; exit 1; }
    sleep 0.1
  done
  log "not ready after 30 s"; cat "$dir/prometheus.log" >&2; stop "$dir"; exit 1
}

case "${1:-}" in
  start) start "$2" "$3" "$4" ;;
  stop) stop "$2" ;;
  *) echo "usage: $0 start FILE.om WORKDIR PORT | stop WORKDIR" >&2; exit 2 ;;
esac
