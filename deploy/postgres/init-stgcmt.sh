#!/bin/sh
# Run once by the postgres image on an empty data directory (docker-compose.ha.yml): the sidecars get a
# database and a role of their own beside Orthanc's. Their tables are created by the sidecars themselves
# (versioned migrations, applied by the first node that starts).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v stgcmt_password="$STGCMT_DB_PASSWORD" <<'SQL'
CREATE ROLE stgcmt LOGIN PASSWORD :'stgcmt_password';
CREATE DATABASE stgcmt OWNER stgcmt;
SQL
