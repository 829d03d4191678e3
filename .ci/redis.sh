#!/usr/bin/env bash
# Make sure Redis answers on 127.0.0.1:6379, as the tests expect: use the
# server already running, else start the installed one, else install
# Debian's package and start that. Nothing is saved to disk: the tests'
# keys expire on their own.
set -euo pipefail

up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }

if up; then
	echo "redis: already running on 127.0.0.1:6379"
	exit 0
fi
if ! command -v redis-server >/dev/null 2>&1; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "redis is not running and installing it needs root; start it, or run this script as root" >&2
		exit 1
	fi
	echo "redis: installing Debian's redis-server package"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
	# The package's service may have started it already.
	sleep 1
	if up; then
		echo "redis: running on 127.0.0.1:6379"
		exit 0
	fi
fi

redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no
for _ in $(seq 1 30); do
	up && break
	sleep 0.2
done
if ! up; then
	echo "redis: did not start" >&2
	exit 1
fi
echo "redis: $(redis-server --version | cut -d' ' -f3) running on 127.0.0.1:6379"
