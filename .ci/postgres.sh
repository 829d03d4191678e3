#!/usr/bin/env bash
# Make sure PostgreSQL answers on 127.0.0.1:5432 and trusts loopback
# connections, as the tests expect: use the server already running, else
# start the installed one, else install Debian's package and start that.
set -euo pipefail

up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

if up; then
	echo "postgres: already running on 127.0.0.1:5432"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "postgres is not running and installing it needs root; start it, or run this script as root" >&2
	exit 1
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
	echo "postgres: installing Debian's postgresql package"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$ver" ]; then
	ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
fi
if [ ! -d "/etc/postgresql/$ver/main" ]; then
	pg_createcluster "$ver" main
fi

# Trust loopback connections (test-only machines): first match wins in pg_hba.
hba="/etc/postgresql/$ver/main/pg_hba.conf"
if ! grep -q 'tollgate-ci' "$hba"; then
	sed -i '1i host all all 127.0.0.1/32 trust # tollgate-ci\nhost all all ::1/128 trust # tollgate-ci' "$hba"
fi

# Postgres refuses to run as root: pg_ctlcluster runs it as the postgres user.
pg_ctlcluster --skip-systemctl-redirect "$ver" main start || pg_ctlcluster "$ver" main reload || true
for _ in $(seq 1 30); do
	up && break
	sleep 1
done
if ! up; then
	echo "postgres: did not start; see /var/log/postgresql/" >&2
	exit 1
fi
echo "postgres: $ver running on 127.0.0.1:5432"
