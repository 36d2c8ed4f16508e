#!/bin/sh
# Generates configure and Makefile.in from configure.ac and Makefile.am.
set -e
cd "$(dirname "$0")"
for tool in autoreconf libtoolize pkg-config; do
    command -v $tool >/dev/null 2>&1 || {
        echo "autogen.sh: $tool not found; install it: apt-get install autoconf automake libtool pkg-config" >&2
        exit 1
    }
done
mkdir -p m4 build-aux
autoreconf --install --force
