# Shared by scripts/dev and scripts/test: make sure a PostgreSQL server
# answers on 127.0.0.1:5432, installing and starting the machine's own
# PostgreSQL when it is missing or down. Sourced, not run.

PGHOST_ADDR=127.0.0.1
PGPORT_NUM=5432
# With trust auth (this machine's default) the password is ignored; on a
# server we installed ourselves it is the one we set below.
: "${TOKKA_PG_ADMIN_URL:=postgres://postgres:postgres@${PGHOST_ADDR}:${PGPORT_NUM}/postgres?sslmode=disable}"
export TOKKA_PG_ADMIN_URL

pg_up() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM"
  else
    (exec 3<>"/dev/tcp/$PGHOST_ADDR/$PGPORT_NUM") 2>/dev/null
  fi
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

ensure_postgres() {
  pg_up && return 0
  local installed_now=0
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    echo "PostgreSQL is not installed; installing it with apt-get…" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql postgresql-client >/dev/null
    installed_now=1
  fi
  local version
  version=$(ls /usr/lib/postgresql | sort -V | tail -1)
  if [ ! -d "/etc/postgresql/$version/main" ]; then
    # pg_createcluster runs initdb as the postgres user itself.
    as_root pg_createcluster "$version" main >/dev/null
    installed_now=1
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
  if ! pg_up; then
    echo "PostgreSQL did not start on $PGHOST_ADDR:$PGPORT_NUM; see /var/log/postgresql/" >&2
    return 1
  fi
  if [ "$installed_now" = 1 ]; then
    as_root runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD 'postgres'" >/dev/null
  fi
}
