#!/usr/bin/env bash
# Make sure Debian's Chromium is installed: the console's browser test
# drives it headless. Without root, say what to do instead.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "chromium is not installed and installing it needs root: apt-get install chromium (the browser test skips without it, except in CI)" >&2
	exit 0
fi
echo "chromium: installing Debian's chromium package"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
