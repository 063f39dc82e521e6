#!/bin/sh
# Installs moto (the Python AWS emulator the providers/aws tests run against) unless it is
# already importable. Pinned: the tests document moto 5.2.1's gaps against AWS' behaviour.
set -eu
if python3 -c 'import moto.server' 2>/dev/null; then
	exit 0
fi
echo "install-moto: installing moto[server]==5.2.1" >&2
exec python3 -m pip install --quiet 'moto[server]==5.2.1'
