#!/bin/sh
# A logical backup of the platform's PostgreSQL database (every service's schema) with pg_dump,
# run by the chart's backup CronJob (templates/backup.yaml) and tested against a real server by
# tests/integration/test_chart_backup.py.
#
#   AGRITRACE_DATABASE_URL  the services' SQLAlchemy URL (postgresql+psycopg://...) or a libpq one
#   BACKUP_DIR              where dumps are kept (default /backups)
#   BACKUP_KEEP             how many dumps to keep, newest first (default 7)
#
# A dump is written under a hidden partial name and renamed only once pg_restore has read its
# whole table of contents, with its SHA-256 beside it, so a failed or interrupted run leaves no
# file that looks like a backup; the next run removes the leftover and starts again. Old dumps
# are deleted only after a new one is complete. pg_dump's --verbose lines are the progress.
# The database URL (it holds a password) is never printed. The dump holds personal data only
# as the registry stores it, sealed with the PII key; back that key up apart from the dumps.
set -eu

dir="${BACKUP_DIR:-/backups}"
keep="${BACKUP_KEEP:-7}"
case "$keep" in
  '' | *[!0-9]* | 0) echo "pg-backup: BACKUP_KEEP must be a whole number of at least 1" >&2; exit 2 ;;
esac
if [ -z "${AGRITRACE_DATABASE_URL:-}" ]; then
  echo "pg-backup: AGRITRACE_DATABASE_URL is not set" >&2
  exit 2
fi
# libpq takes postgresql:// but not SQLAlchemy's driver suffix (postgresql+psycopg://).
url="$(printf '%s' "$AGRITRACE_DATABASE_URL" | sed -E 's#^postgresql\+[A-Za-z0-9_]+://#postgresql://#')"

mkdir -p "$dir"
rm -f "$dir"/.agritrace-*.partial
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
while [ -e "$dir/agritrace-$stamp.dump" ]; do  # a second run within the same second
  sleep 1
  stamp="$(date -u +%Y%m%dT%H%M%SZ)"
done
name="agritrace-$stamp.dump"
partial="$dir/.$name.partial"

echo "pg-backup: dumping into $dir/$name"
pg_dump --dbname="$url" --format=custom --no-owner --no-privileges --verbose --file="$partial"
tables="$(pg_restore --list "$partial" | grep -c ' TABLE DATA ' || true)"
(cd "$dir" && sha256sum ".$name.partial" | sed "s# \.$name\.partial\$# $name#" >"$name.sha256")
mv "$partial" "$dir/$name"
echo "pg-backup: $name complete: $(wc -c <"$dir/$name") bytes, $tables tables' data"

# Keep the newest $keep dumps (their names sort by time).
count=0
for old in $(ls -1 "$dir" | grep -E '^agritrace-[0-9]{8}T[0-9]{6}Z\.dump$' | sort -r); do
  count=$((count + 1))
  if [ "$count" -gt "$keep" ]; then
    rm -f "$dir/$old" "$dir/$old.sha256"
    echo "pg-backup: removed $old (keeping $keep)"
  fi
done
