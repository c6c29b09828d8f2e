#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 with user postgres and a
# database `test` (trust auth, as on the project's machines). Start it if it is
# installed but stopped; install it from Debian's packages if it is missing. Fail
# loudly otherwise: CI never skips the PostgreSQL tests.
set -euo pipefail

ready() { command -v pg_isready >/dev/null && pg_isready -h 127.0.0.1 -p 5432 -q; }

if ! ready; then
  if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    echo "PostgreSQL is not installed: installing it from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    version=$(ls /etc/postgresql | head -n 1)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/' "$hba"
    sed -i -E 's/^(local\s+all\s+postgres\s+)\S+/\1trust/' "$hba"
  fi
  version=$(ls /etc/postgresql | head -n 1)
  echo "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do ready && break; sleep 1; done
fi
if ! ready; then
  echo "ERROR: PostgreSQL does not answer on 127.0.0.1:5432; the PostgreSQL tests cannot run" >&2
  exit 1
fi
if ! psql -h 127.0.0.1 -U postgres -tAc "select 1" test >/dev/null 2>&1; then
  psql -h 127.0.0.1 -U postgres -tAc "create database test" postgres
fi
echo "PostgreSQL ready: $(psql -h 127.0.0.1 -U postgres -tAc 'show server_version' test)"
