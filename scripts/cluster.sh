#!/usr/bin/env bash
# The scaled Duet of docker-compose.yml, as native processes on loopback: nginx in front of two gateways,
# two session-APIs, two realtime hubs, a throw-away PostgreSQL and Redis. No container engine needed:
# Debian's postgresql, redis-server and nginx packages, and this repository's binaries.
#
#   scripts/cluster.sh start            build the binaries, start everything, print the URL
#   scripts/cluster.sh status           what runs where (exit 1 if anything is down)
#   scripts/cluster.sh stop             stop everything and remove the run directory
#
# For trying faults by hand (and for the scale-out tests in tests/cluster/):
#   scripts/cluster.sh kill NAME [SIGNAL]   stop one process (default TERM; KILL for a crash) and wait
#   scripts/cluster.sh up NAME              start one process again, or a new one (hub-3, gateway-3, …)
#   scripts/cluster.sh restart NAME         both (postgres, redis: a restart with their data dir kept;
#                                           Redis keeps nothing, as in docker-compose.yml)
#   scripts/cluster.sh reload-nginx         write nginx's config again (gateways added) and reload it
#   scripts/cluster.sh env                  the cluster's addresses as shell variables
#
# NAME is postgres, redis, nginx, session-api-N, hub-N or gateway-N. Settings (environment):
#   DUET_CLUSTER_DIR      run directory (default /tmp/duet-cluster-$UID): data, logs, pids, cluster.env
#   DUET_CLUSTER_PORT     nginx's port (default 8080; 0 picks a free one)
#   DUET_CLUSTER_PROFILE  cargo profile of the binaries (default release; the tests use dev)
#   DUET_CLUSTER_NO_BUILD=1  use the binaries as they are
#   SECRET_KEY            the token key of every service (at least 16 bytes; default: random per cluster,
#                         kept in cluster.env)
# Gateways know hubs only from their Redis registrations (no static list), as k8s/configmap.yaml runs them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${DUET_CLUSTER_DIR:-${TMPDIR:-/tmp}/duet-cluster-$(id -u)}
profile=${DUET_CLUSTER_PROFILE:-release}
case "$profile" in dev | debug) bindir=$root/target/debug ;; *) bindir=$root/target/$profile ;; esac
env_file=$dir/cluster.env

# Seconds a stopped process gets to exit before it is killed: the hub's drain is bounded by 10 s.
STOP_WAIT=20
# Seconds a started process gets to answer its health check.
START_WAIT=60

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*" >&2; }

pg_bin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$d" ] && echo "$d" || dirname "$(command -v initdb || die "PostgreSQL binaries not found (apt-get install postgresql)")"
}

# As root, PostgreSQL refuses to run: it runs as the postgres system user.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

load_env() {
    [ -f "$env_file" ] || die "no cluster in $dir (scripts/cluster.sh start)"
    # shellcheck disable=SC1090
    . "$env_file"
}

# The port of NAME, allocated (and recorded in cluster.env) on first use.
port_of() {
    local var port
    var=PORT_$(echo "$1" | tr 'a-z-' 'A-Z_')
    port=$(grep -m1 "^$var=" "$env_file" 2>/dev/null | cut -d= -f2 || true)
    if [ -z "$port" ]; then
        port=$(free_port)
        echo "$var=$port" >>"$env_file"
    fi
    echo "$port"
}

# A process that has exited but is not reaped yet (a zombie: its parent, this script's earlier run,
# is gone and the reaper is slow) counts as stopped: its port and files are free.
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
pid_alive() { [ -f "$dir/$1.pid" ] && alive "$(cat "$dir/$1.pid")"; }

# Starts a service binary with its environment; returns once /healthz answers.
spawn() {
    local name=$1 bin=$2
    shift 2
    pid_alive "$name" && { log "$name is already running"; return 0; }
    local port
    port=$(port_of "$name")
    (
        cd "$dir"
        exec env HOST=127.0.0.1 PORT="$port" DUET_LOG_FORMAT=json DUET_FRONTEND_DIR="$root/frontend/dist" \
            SECRET_KEY="$SECRET_KEY" "$@" setsid "$bindir/$bin" >>"$dir/$name.log" 2>&1 </dev/null
    ) &
    echo $! >"$dir/$name.pid"
    wait_http "$name" "http://127.0.0.1:$port/healthz"
}

wait_http() {
    local name=$1 url=$2 end=$((SECONDS + START_WAIT))
    until curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; do
        pid_alive "$name" || die "$name exited; its log ($dir/$name.log) ends with:
$(tail -20 "$dir/$name.log" 2>/dev/null)"
        [ $SECONDS -lt $end ] || die "$name did not answer $url within ${START_WAIT}s"
        sleep 0.1
    done
}

pg_url() { echo "postgres://duet@127.0.0.1:$(port_of postgres)/duet"; }
redis_url() { echo "redis://127.0.0.1:$(port_of redis)"; }

up_postgres() {
    local bin port
    bin=$(pg_bin)
    port=$(port_of postgres)
    if [ ! -d "$dir/pg" ]; then
        mkdir -p "$dir/pg"
        if [ "$(id -u)" = 0 ]; then chown postgres "$dir/pg"; fi
        as_pg "$bin/initdb" -D "$dir/pg" -U duet --auth=trust -E UTF8 >"$dir/postgres-init.log" 2>&1 \
            || die "initdb failed: $(tail -5 "$dir/postgres-init.log")"
        # Durability off: this database is thrown away with the cluster.
        cat >>"$dir/pg/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/pg'
fsync = off
full_page_writes = off
max_connections = 200
EOF
    fi
    touch "$dir/postgres.log"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir/postgres.log"; fi
    as_pg "$bin/pg_ctl" start -D "$dir/pg" -l "$dir/postgres.log" -w -t 60 >/dev/null \
        || die "PostgreSQL did not start: $(tail -5 "$dir/postgres.log")"
    if ! as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U duet -d postgres -XAtqc \
        "SELECT 1 FROM pg_database WHERE datname = 'duet'" | grep -q 1; then
        as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U duet duet
    fi
}

down_postgres() {
    [ -f "$dir/pg/postmaster.pid" ] || return 0
    as_pg "$(pg_bin)/pg_ctl" stop -D "$dir/pg" -m "${1:-fast}" -w -t 60 >/dev/null 2>&1 || true
}

up_redis() {
    pid_alive redis && return 0
    mkdir -p "$dir/redis"
    # No persistence, as in docker-compose.yml: a restart comes back empty.
    redis-server --port "$(port_of redis)" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$dir/redis" --logfile "$dir/redis.log" --daemonize yes --pidfile "$dir/redis.pid" >/dev/null
    local end=$((SECONDS + START_WAIT))
    until redis-cli -p "$(port_of redis)" ping 2>/dev/null | grep -q PONG; do
        [ $SECONDS -lt $end ] || die "redis-server did not answer"
        sleep 0.1
    done
}

# deploy/nginx.conf with the gateways' and nginx's loopback addresses, and files under the run dir.
nginx_conf() {
    local port=$1 out=$dir/nginx.conf gateways="" n
    for n in $(gateway_names); do gateways+="        server 127.0.0.1:$(port_of "$n")PARAMS;\n"; done
    mkdir -p "$dir/nginx-tmp"
    chmod 0777 "$dir/nginx-tmp"
    python3 - "$root/deploy/nginx.conf" "$out" "$port" "$dir" "$gateways" <<'EOF'
import re, sys
src, out, port, run, gateways = sys.argv[1:]
conf = open(src).read()
servers = re.findall(r"^\s*server gateway-\d+:8080([^;]*);\n", conf, flags=re.M)
assert len(servers) == 2, f"deploy/nginx.conf: expected two gateway servers, found {len(servers)}"
# The same server parameters (max_fails, …) as deploy/nginx.conf gives its gateways.
gateways = gateways.replace("\\n", "\n").replace("PARAMS", servers[0])
conf = re.sub(r"(\n\s*server gateway-\d+:8080[^;]*;)+\n", "\n" + gateways, conf, count=1)
assert "listen 80;" in conf, "deploy/nginx.conf: expected 'listen 80;'"
conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
conf = conf.replace("worker_processes auto;", f"worker_processes 2;\npid {run}/nginx.pid;\nerror_log {run}/nginx.error.log;")
files = "\n".join(f"    {k}_temp_path {run}/nginx-tmp/{k};" for k in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"])
conf = conf.replace("http {", f"http {{\n    access_log {run}/nginx.access.log;\n{files}\n", 1)
open(out, "w").write(conf)
EOF
    echo "$out"
}

gateway_names() { ls "$dir"/gateway-*.pid 2>/dev/null | sed 's|.*/||; s|\.pid$||' | sort -V || true; }

up_nginx() {
    pid_alive nginx && return 0
    local port conf
    port=$(port_of nginx)
    conf=$(nginx_conf "$port")
    nginx -t -q -c "$conf" -p "$dir" -e "$dir/nginx.error.log" 2>"$dir/nginx.check.log" \
        || die "nginx rejects $conf: $(cat "$dir/nginx.check.log")"
    nginx -c "$conf" -p "$dir" -e "$dir/nginx.error.log"
    wait_http nginx "http://127.0.0.1:$port/healthz"
}

up() {
    local name=$1 n
    case "$name" in
    postgres) up_postgres ;;
    redis) up_redis ;;
    nginx) up_nginx ;;
    session-api-[0-9]*)
        # REDIS_URL: interviewer actions (start, end, controls, remove) are announced to the hubs.
        # Trusts X-Forwarded-For from the gateways on this host only (per-IP limits).
        spawn "$name" duet-session-api DATABASE_URL="$(pg_url)" REDIS_URL="$(redis_url)" \
            DUET_API__TRUSTED_PROXIES=127.0.0.1 ;;
    hub-[0-9]*)
        n=${name#hub-}
        spawn "$name" duet-realtime-hub DATABASE_URL="$(pg_url)" REDIS_URL="$(redis_url)" \
            DUET_HUB__ID="$name" DUET_HUB__PUBLIC_URL="http://127.0.0.1:$(port_of "$name")" ;;
    gateway-[0-9]*)
        local apis="" a
        for a in session-api-1 session-api-2; do apis+="${apis:+,}http://127.0.0.1:$(port_of $a)"; done
        # Trusts X-Forwarded-For from nginx on this host only.
        spawn "$name" duet-gateway REDIS_URL="$(redis_url)" DUET_GATEWAY__SESSION_API_URLS="$apis" \
            DUET_GATEWAY__TRUSTED_PROXIES=127.0.0.1 ;;
    *) die "unknown name: $name" ;;
    esac
}

# Stops NAME with SIGNAL and waits until it has exited (killing it after STOP_WAIT seconds).
down() {
    local name=$1 sig=${2:-TERM}
    case "$name" in
    postgres)
        if [ "$sig" = KILL ]; then down_postgres immediate; else down_postgres fast; fi
        return 0 ;;
    nginx)
        pid_alive nginx || return 0
        if [ "$sig" = KILL ]; then kill -KILL "$(cat "$dir/nginx.pid")"; pkill_children nginx; else
            nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/nginx.error.log" -s quit 2>/dev/null || true
        fi ;;
    esac
    pid_alive "$name" || { rm -f "$dir/$name.pid"; return 0; }
    local pid end
    pid=$(cat "$dir/$name.pid")
    [ "$name" = nginx ] || kill -"$sig" "$pid" 2>/dev/null || true
    end=$((SECONDS + STOP_WAIT))
    while alive "$pid"; do
        if [ $SECONDS -ge $end ]; then
            log "$name did not stop within ${STOP_WAIT}s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        sleep 0.05
    done
    [ "$name" = redis ] || [ "$name" = nginx ] || rm -f "$dir/$name.pid"
}

# nginx's workers, by their parent's pid (only this cluster's).
pkill_children() {
    local ppid
    ppid=$(cat "$dir/$1.pid")
    for p in $(ps -o pid= --ppid "$ppid" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
}

all_names() {
    printf "%s\n" postgres redis
    ls "$dir"/*.pid 2>/dev/null | sed 's|.*/||; s|\.pid$||' | grep -E '^(session-api|hub|gateway)-' | sort -V
    echo nginx
}

cmd_start() {
    [ -f "$env_file" ] && die "a cluster already runs in $dir (scripts/cluster.sh stop first)"
    for b in redis-server nginx curl python3; do command -v $b >/dev/null || die "$b not found (see README: the scaled mode)"; done
    if [ -z "${DUET_CLUSTER_NO_BUILD:-}" ]; then
        log "building the binaries ($profile)"
        (cd "$root" && cargo build --profile "$profile" -p duet-gateway -p duet-session-api -p duet-realtime-hub)
    fi
    for b in duet-gateway duet-session-api duet-realtime-hub; do
        [ -x "$bindir/$b" ] || die "$bindir/$b is missing"
    done
    mkdir -p "$dir"
    # PostgreSQL runs as another user when this runs as root: it must reach its data dir.
    chmod 0755 "$dir"
    local port=${DUET_CLUSTER_PORT:-8080}
    [ "$port" = 0 ] && port=$(free_port)
    {
        echo "PORT_NGINX=$port"
        # One key for every service (hubs, gateways, session-APIs): the caller's SECRET_KEY if it
        # exports one (a test that signs its own tokens), else a random one for this cluster.
        printf 'SECRET_KEY=%q\n' "${SECRET_KEY:-$(head -c 32 /dev/urandom | base64 | tr -d '/+=')}"
    } >"$env_file"
    load_env
    # Stop what started if anything fails.
    trap 'if [ $? -ne 0 ]; then log "start failed; stopping (logs were in $dir)"; cmd_stop >/dev/null 2>&1 || true; fi' EXIT
    up postgres
    up redis
    up session-api-1
    up session-api-2
    up hub-1
    up hub-2
    up gateway-1
    up gateway-2
    up nginx
    trap - EXIT
    echo "Duet (scaled) is up at http://127.0.0.1:$PORT_NGINX/  (run dir $dir; scripts/cluster.sh status)"
}

cmd_stop() {
    [ -d "$dir" ] || return 0
    [ -f "$env_file" ] && load_env
    local name
    # Front to back, each tier at once: nginx, the gateways, then the hubs and session-APIs (which
    # drain and commit), then the stores.
    down nginx TERM
    for name in $(all_names | grep -E '^gateway-'); do down "$name" TERM & done
    wait
    for name in $(all_names | grep -E '^(hub|session-api)-'); do down "$name" TERM & done
    wait
    if pid_alive redis; then kill "$(cat "$dir/redis.pid")"; fi
    down_postgres fast
    rm -rf -- "$dir"
    echo "cluster.sh: stopped"
}

cmd_status() {
    load_env
    local name ok=0 state url
    printf '%-14s %-8s %-6s %s\n' NAME PID PORT STATE
    for name in $(all_names); do
        local port pid=-
        port=$(port_of "$name")
        case "$name" in
        postgres)
            pid=$(head -1 "$dir/pg/postmaster.pid" 2>/dev/null || echo -)
            if as_pg "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$port"; then state=up; else state=down; fi ;;
        redis)
            pid=$(cat "$dir/redis.pid" 2>/dev/null || echo -)
            if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then state=up; else state=down; fi ;;
        *)
            pid=$(cat "$dir/$name.pid" 2>/dev/null || echo -)
            url="http://127.0.0.1:$port/healthz"
            if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then state=up; else state=down; fi ;;
        esac
        [ "$state" = up ] || ok=1
        printf '%-14s %-8s %-6s %s\n' "$name" "${pid:--}" "$port" "$state"
    done
    echo "URL http://127.0.0.1:$PORT_NGINX/"
    return $ok
}

cmd_env() {
    load_env
    echo "DUET_CLUSTER_DIR=$dir"
    echo "DUET_URL=http://127.0.0.1:$PORT_NGINX"
    echo "DATABASE_URL=$(pg_url)"
    echo "REDIS_URL=$(redis_url)"
    local name
    for name in $(all_names | grep -vE '^(postgres|redis|nginx)$'); do
        echo "URL_$(echo "$name" | tr 'a-z-' 'A-Z_')=http://127.0.0.1:$(port_of "$name")"
    done
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
up) [ $# -ge 2 ] || die "usage: cluster.sh up NAME"; load_env; up "$2" ;;
kill) [ $# -ge 2 ] || die "usage: cluster.sh kill NAME [SIGNAL]"; load_env; down "$2" "${3:-TERM}" ;;
restart) [ $# -ge 2 ] || die "usage: cluster.sh restart NAME"; load_env; down "$2" TERM; up "$2" ;;
reload-nginx)
    # The config is written again first, so gateways added since are in it.
    load_env
    conf=$(nginx_conf "$(port_of nginx)")
    nginx -c "$conf" -p "$dir" -e "$dir/nginx.error.log" -s reload ;;
*) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
