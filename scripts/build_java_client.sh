#!/usr/bin/env bash
# Build the Java client (clients/java): the generated privtune-api jar and the example client.
# Prints the example's runtime classpath, the one line a caller needs to run it:
#   java -cp "$(scripts/build_java_client.sh)" dev.privtune.example.CurateExample --help
# Maven's cache is ~/.m2; the first build downloads protoc, protoc-gen-grpc-java and the
# dependencies from Maven Central (about a minute), later builds need no network.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v mvn >/dev/null; then
  echo "mvn not found: the Java client needs Maven 3.8+ and a JDK 17+ (Debian: apt-get install maven)" >&2
  exit 1
fi
cd "$root/clients/java"
mvn -q -B package >&2
example="$root/clients/java/example/target"
echo "$example/privtune-example-0.2.0.jar:$example/lib/*"
