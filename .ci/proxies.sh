#!/usr/bin/env bash
# Make sure nginx (with auth_request) and caddy are installed for the
# proxy end-to-end tests (e2e/proxies_test.go), which run each with the
# shipped config in a temporary directory: install Debian's packages when
# either is missing. Nothing is started here, and Debian's nginx service,
# if the package starts one, is stopped: the tests run their own.
set -euo pipefail

missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
if [ ${#missing[@]} -eq 0 ]; then
	echo "proxies: nginx and caddy already installed"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "proxies: ${missing[*]} missing and installing needs root; install them, or run this script as root" >&2
	exit 1
fi
echo "proxies: installing Debian's ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
# The packages' services are not the tests' (and would hold port 80).
if [ -f /run/nginx.pid ]; then
	nginx -s quit 2>/dev/null || true
fi
nginx -V 2>&1 | grep -q http_auth_request_module || {
	echo "proxies: this nginx lacks the auth_request module" >&2
	exit 1
}
echo "proxies: $(nginx -v 2>&1), caddy $(caddy version)"
