#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: a fresh cluster in a temp
# dir, listening only on 127.0.0.1 on a free port, with an empty database
# `understudy`. Stopped and deleted on every exit path.
#
# Usage:
#   scripts/pg-throwaway.sh [--install]
#       Prints the cluster's URL on stdout and waits; Ctrl-C (or SIGTERM)
#       stops the cluster and removes it.
#   scripts/pg-throwaway.sh [--install] -- CMD [ARGS...]
#       Runs CMD with UNDERSTUDY_TEST_POSTGRES=<URL> in its environment,
#       then stops and removes the cluster and exits with CMD's status.
#       (`make test` runs the Go tests this way.)
#       Tests that stop and restart the server (internal/pgtest's Stop and
#       Start) also get UNDERSTUDY_TEST_PGDATA, the data directory, and
#       UNDERSTUDY_TEST_PGCTL, the command that runs pg_ctl as the cluster's
#       user; the server's settings are in its postgresql.conf, so a plain
#       `$UNDERSTUDY_TEST_PGCTL -D $UNDERSTUDY_TEST_PGDATA -l LOG start`
#       brings it back as it was.
#
# The URL: postgres://postgres@127.0.0.1:PORT/understudy?sslmode=disable
# (user postgres, trust auth; internal/pgtest makes one database per test).
#
# Without PostgreSQL: when root with apt-get, and --install is given or
# UNDERSTUDY_INSTALL_POSTGRES=1, Debian's `postgresql` package is installed.
# Otherwise the script says how to install it and exits 3; except that in
# `--` mode it still runs CMD (without the variable, so the PostgreSQL tests
# skip) unless UNDERSTUDY_REQUIRE_POSTGRES=1.
#
# PostgreSQL refuses to run as root, so as root the cluster runs as the
# `postgres` user (which Debian's package creates).
set -euo pipefail

prog=pg-throwaway
say() { echo "$prog: $*" >&2; }
usage() {
  sed -n '6,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
}

install=0
[ "${UNDERSTUDY_INSTALL_POSTGRES:-}" = 1 ] && install=1
mode="wait"
while [ $# -gt 0 ]; do
  case "$1" in
    --install) install=1; shift ;;
    --) shift; mode=run; break ;;
    -h|--help) usage; exit 0 ;;
    *) say "unknown argument: $1"; usage; exit 2 ;;
  esac
done
if [ "$mode" = run ] && [ $# -eq 0 ]; then
  say "no command after --"; usage; exit 2
fi

# find_bindir prints the directory holding initdb, pg_ctl and createdb, or
# fails. pg_config may be libpq-dev's alone (bindir /usr/bin, no server), so
# each candidate must hold initdb.
find_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  fi
  # The newest major version under Debian's layout.
  local v best=""
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] || continue
    v=${d#/usr/lib/postgresql/}; v=${v%/bin}
    case "$v" in *[!0-9]*) continue ;; esac
    if [ -z "$best" ] || [ "$v" -gt "$best" ]; then best=$v; fi
  done
  if [ -n "$best" ]; then echo "/usr/lib/postgresql/$best/bin"; return 0; fi
  d=$(command -v initdb 2>/dev/null || true)
  if [ -n "$d" ]; then dirname "$d"; return 0; fi
  return 1
}

missing_msg="PostgreSQL is not installed (no initdb found via pg_config, in /usr/lib/postgresql/*/bin or on PATH). Install it with: apt-get update && apt-get install -y postgresql (or run this script as root with --install, or UNDERSTUDY_INSTALL_POSTGRES=1)"

bindir=$(find_bindir || true)
if [ -z "$bindir" ] && [ "$install" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "installing Debian's postgresql package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
  bindir=$(find_bindir || true)
fi
if [ -z "$bindir" ]; then
  if [ "$mode" = run ] && [ "${UNDERSTUDY_REQUIRE_POSTGRES:-}" != 1 ]; then
    say "$missing_msg"
    say "running the command without UNDERSTUDY_TEST_POSTGRES: the PostgreSQL tests will skip"
    exec "$@"
  fi
  say "$missing_msg"
  exit 3
fi

# as_pg runs a server command as the postgres user when we are root.
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || { say "running as root, but there is no postgres user to run the cluster as"; exit 1; }
  as_pg() { runuser -u postgres -- "$@"; }
  pgctl="runuser -u postgres -- $bindir/pg_ctl"
else
  as_pg() { "$@"; }
  pgctl="$bindir/pg_ctl"
fi

dir=""
data=""
started=0
sleeper=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$sleeper" ]; then kill "$sleeper" 2>/dev/null || true; fi
  if [ "$started" = 1 ]; then
    if ! as_pg "$bindir/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1; then
      say "pg_ctl -m fast stop failed; stopping with -m immediate. The end of the log:"
      tail -n 20 "$dir/log" >&2 || true
      as_pg "$bindir/pg_ctl" -D "$data" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
    fi
  fi
  if [ -n "$dir" ]; then rm -rf "$dir"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dir=$(mktemp -d "${TMPDIR:-/tmp}/pg-throwaway.XXXXXX")
data="$dir/data"
if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi

# initdb: UTF-8 with the C.UTF-8 locale where the system has it; plain C
# (--no-locale) where it does not.
if ! as_pg "$bindir/initdb" -D "$data" --auth=trust -U postgres --encoding=UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1; then
  rm -rf "$data"
  if ! as_pg "$bindir/initdb" -D "$data" --auth=trust -U postgres --encoding=UTF8 --no-locale \
      >"$dir/initdb.log" 2>&1; then
    say "initdb failed:"
    tail -n 20 "$dir/initdb.log" >&2
    exit 1
  fi
fi

# port_free: nothing accepts a TCP connection on 127.0.0.1:$1 (bash's
# /dev/tcp, so no ss, nc or python is needed; loopback refuses at once).
port_free() { ! timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# Ports are drawn from 15000-31999, below Linux's default ephemeral range
# (32768-60999), so outgoing connections do not take ours between the
# probe and the bind; a lost race (bind fails) just tries another port.
port=""
for attempt in 1 2 3 4 5; do
  port=$((15000 + RANDOM % 17000))
  for _ in $(seq 1 50); do
    port_free "$port" && break
    port=$(( port >= 31999 ? 15000 : port + 1 ))
  done
  # fsync, synchronous_commit and full_page_writes are off: this cluster is
  # thrown away after the tests, so durability across a crash buys nothing
  # and costs time. The settings go into postgresql.conf (the last of a
  # repeated setting wins) rather than onto pg_ctl's command line, so that
  # a test that stops the server starts it again the same way.
  cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
CONF
  if as_pg "$bindir/pg_ctl" -D "$data" -w -t 60 -l "$dir/log" start >/dev/null 2>&1; then
    started=1
    break
  fi
  # A server that is up but missed pg_ctl's wait still needs stopping.
  if [ -f "$data/postmaster.pid" ]; then started=1; fi
  if [ "$started" != 1 ] && [ "$attempt" -lt 5 ] &&
      grep -q -e 'could not bind' -e 'Address already in use' "$dir/log" 2>/dev/null; then
    say "port $port was taken; trying another"
    : >"$dir/log"
    continue
  fi
  say "the PostgreSQL cluster did not start; the end of its log:"
  tail -n 30 "$dir/log" >&2 || true
  exit 1
done
if [ "$started" != 1 ]; then
  say "the PostgreSQL cluster did not start"
  exit 1
fi

if ! "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres understudy; then
  say "could not create the database understudy; the end of the cluster's log:"
  tail -n 30 "$dir/log" >&2 || true
  exit 1
fi
url="postgres://postgres@127.0.0.1:$port/understudy?sslmode=disable"

if [ "$mode" = wait ]; then
  echo "$url"
  say "PostgreSQL $("$bindir/pg_ctl" --version | awk '{print $3}') is up in $dir; Ctrl-C stops and removes it"
  # wait (unlike a foreground sleep) returns as soon as a trapped signal comes.
  sleep infinity &
  sleeper=$!
  wait "$sleeper"
  exit 0
fi

export UNDERSTUDY_TEST_POSTGRES="$url"
export UNDERSTUDY_TEST_PGDATA="$data"
export UNDERSTUDY_TEST_PGCTL="$pgctl"
# CMD runs in the foreground, so Ctrl-C reaches it as well; a SIGTERM sent to
# this script alone takes effect (stop, remove, exit 143) once CMD has ended.
set +e
"$@"
status=$?
set -e
exit "$status"
