#!/bin/sh
# test_python: the Python client of clients/python against live shoald
# processes (tests/test_python.py). It runs with the python3 that configure
# found with the zmq and protobuf modules (Debian's /usr/bin/python3 with
# python3-zmq and python3-protobuf), with the generated shoal_pb2.py of the
# build tree; without them it SKIPs and says what to install.
srcdir=${SHOAL_SRCDIR:-.}
builddir=${SHOAL_BUILDDIR:-.}
if [ -z "${SHOAL_PYTHON:-}" ]; then
    echo "1..0 # SKIP no python3 with zmq and protobuf, or no protoc (apt-get install python3-zmq python3-protobuf protobuf-compiler, then configure again)"
    exit 0
fi
if [ ! -f "$builddir/clients/python/shoal_pb2.py" ]; then
    echo "1..0 # SKIP $builddir/clients/python/shoal_pb2.py was not generated (run make)"
    exit 0
fi
PYTHONPATH="$builddir/clients/python:$srcdir/clients/python"
PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH PYTHONDONTWRITEBYTECODE
exec "$SHOAL_PYTHON" "$srcdir/tests/test_python.py"
