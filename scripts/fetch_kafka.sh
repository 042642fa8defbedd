#!/usr/bin/env bash
# Fetch (once) the Apache Kafka 4.3.1 broker jars from Maven Central into the cache
# and print the libs directory. Re-runs are instant: a .complete marker holding the
# pom's sha256 says the download finished for this exact pom.
#   CACHE=${PRIVTUNE_CACHE:-$HOME/.cache/privtune} -> $CACHE/kafka-4.3.1/libs
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pom="$root/deploy/kafka/pom.xml"
cache=${PRIVTUNE_CACHE:-$HOME/.cache/privtune}
dir="$cache/kafka-4.3.1"
libs="$dir/libs"
key=$(sha256sum "$pom" | cut -c1-64)
if [ "$(cat "$dir/.complete" 2>/dev/null)" != "$key" ]; then
  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  flock 9  # concurrent callers wait for one download
  if [ "$(cat "$dir/.complete" 2>/dev/null)" != "$key" ]; then
    command -v mvn >/dev/null || {
      echo "fetch_kafka: mvn not found (apt-get install -y maven openjdk-17-jre-headless)" >&2
      exit 1
    }
    echo "privtune: fetching Kafka 4.3.1 jars into $libs (first run only)" >&2
    rm -rf "$libs.tmp" "$libs"
    if ! mvn -B -q -f "$pom" dependency:copy-dependencies -DoutputDirectory="$libs.tmp" \
      >"$dir/mvn.log" 2>&1; then
      cat "$dir/mvn.log" >&2
      exit 1
    fi
    mv "$libs.tmp" "$libs"
    echo "$key" >"$dir/.complete"
  fi
fi
echo "$libs"
