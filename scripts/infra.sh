#!/usr/bin/env bash
# Install / fetch what the real-server tests need (see privtune/devinfra).
#   scripts/infra.sh kafka-fetch        Kafka 4.3.1 jars into the cache (needs java 17+, mvn)
#   scripts/infra.sh postgres-install   PostgreSQL server packages, only if missing
#   scripts/infra.sh rsyslog-install    rsyslogd with TLS (gtls) and RELP modules, only if missing
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
case "${1:-}" in
  kafka-fetch)
    exec "$here/fetch_kafka.sh"
    ;;
  postgres-install)
    if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
      ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1
      exit 0
    fi
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends postgresql
    ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1
    ;;
  rsyslog-install)
    # prints the folder of rsyslog's modules (the SIEM export tests' receiver loads them from there)
    have_rsyslog() {
      command -v rsyslogd >/dev/null 2>&1 &&
        ls /usr/lib/*/rsyslog/lmnsd_gtls.so /usr/lib/*/rsyslog/imrelp.so >/dev/null 2>&1
    }
    if ! have_rsyslog; then
      $sudo apt-get update -q
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        rsyslog rsyslog-gnutls rsyslog-relp
    fi
    dirname "$(ls /usr/lib/*/rsyslog/imrelp.so | head -1)"
    ;;
  *)
    echo "usage: $0 kafka-fetch | postgres-install | rsyslog-install" >&2
    exit 2
    ;;
esac
