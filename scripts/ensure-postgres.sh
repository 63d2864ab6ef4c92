#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 for the test suite (trust auth,
# user postgres). Uses the running one when there is one; otherwise starts the local cluster,
# installing PostgreSQL from Debian's packages when it is missing. Set ORCHEO_TEST_POSTGRES to
# use another server (postgres://user@host:port) and skip all of this.
set -euo pipefail
if [ -n "${ORCHEO_TEST_POSTGRES:-}" ]; then exit 0; fi

up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

# Each test makes its own database (orcheo_test_*); drop those left by earlier runs.
drop_leftovers() {
  command -v psql >/dev/null 2>&1 || return 0
  psql -h 127.0.0.1 -U postgres -d postgres -Atqc \
    "select 'drop database if exists ' || quote_ident(datname) || ';' from pg_database where datname like 'orcheo\_test\_%'" 2>/dev/null \
    | psql -h 127.0.0.1 -U postgres -d postgres -q >/dev/null 2>&1 || true
}

if up; then drop_leftovers; exit 0; fi
echo "PostgreSQL is not answering on 127.0.0.1:5432; starting one" >&2
if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "PostgreSQL is not installed and installing it needs root: apt-get install -y postgresql" >&2
    exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /etc/postgresql | sort -V | tail -1)
conf=/etc/postgresql/$ver/main
# Trust auth on loopback, as the tests expect.
if ! grep -q "orcheo-tests" "$conf/pg_hba.conf"; then
  sed -i '1i host all all 127.0.0.1/32 trust # orcheo-tests\nlocal all all trust # orcheo-tests' "$conf/pg_hba.conf"
fi
pg_ctlcluster --skip-systemctl-redirect "$ver" main start || pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
for _ in $(seq 1 50); do
  if up; then drop_leftovers; exit 0; fi
  sleep 0.2
done
echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
exit 1
