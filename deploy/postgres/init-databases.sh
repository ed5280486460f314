#!/bin/sh
# Runs once, when the PostgreSQL volume is first created: the three services' databases.
set -eu
for db in "$ADMIN_DB" "$BILLING_DB" "$PAY_API_DB"; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -c "CREATE DATABASE \"$db\" ENCODING 'UTF8' TEMPLATE template0"
done
