#!/usr/bin/env bash
# Prepare everything `make test` and `make demo` need, idempotently:
#   - a virtualenv (.venv, or $VENV) with this package and its test extras,
#     setuptools pinned to a release that still ships pkg_resources (IntelMQ 3.5);
#   - the system user `intelmq` when we run as root (IntelMQ drops privileges to it
#     and refuses to run as root without it);
#   - a Redis server answering on 127.0.0.1:6379 (installed with apt-get if missing);
#   - a RabbitMQ broker on 127.0.0.1:5672 when ENSURE_RABBITMQ=1.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

log() { echo "ensure-env: $*" >&2; }

# 1. the intelmq user (only root can and must create it)
if [ "$(id -u)" = "0" ] && ! id intelmq >/dev/null 2>&1; then
    log "creating system user intelmq"
    if command -v useradd >/dev/null; then
        useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin intelmq
    else
        adduser --system --group --no-create-home intelmq
    fi
fi

# 2. virtualenv and package. As root, bots run as the intelmq user, so the
# interpreter behind the venv must be executable by it: pyenv's under /root is not.
runs_as_intelmq() { [ "$(id -u)" != "0" ] || runuser -u intelmq -- "$1" -c "import venv" 2>/dev/null; }
if [ -x "$VENV/bin/python" ] && ! runs_as_intelmq "$(readlink -f "$VENV/bin/python")"; then
    log "recreating $VENV: its interpreter cannot be run by the intelmq user"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    for cand in "$PYTHON" python3 /usr/bin/python3; do
        exe="$(command -v "$cand" 2>/dev/null || true)"
        [ -n "$exe" ] || continue
        exe="$("$exe" -c 'import sys; print(sys.executable)' 2>/dev/null || true)"
        [ -n "$exe" ] && runs_as_intelmq "$(readlink -f "$exe")" && break
        exe=""
    done
    [ -n "$exe" ] || { log "no Python interpreter that the intelmq user can run"; exit 1; }
    log "creating virtualenv $VENV with $exe"
    "$exe" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || ! "$VENV/bin/python" -c "import intelmq_crossborder.bots" 2>/dev/null; then
    log "installing intelmq-crossborder[test] into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "setuptools>=65,<70" wheel
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
fi

# The intelmq user must reach the checkout and the venv; grant traverse (o+x)
# on parent directories that lack it, and say so.
if [ "$(id -u)" = "0" ] && ! runuser -u intelmq -- "$VENV/bin/python" -c "import intelmq_crossborder.bots" 2>/dev/null; then
    dir="$(pwd -P)"
    while [ "$dir" != "/" ]; do
        if [ "$(stat -c %A "$dir" | cut -c10)" != "x" ]; then
            log "granting traverse permission (o+x) on $dir to the intelmq user"
            chmod o+x "$dir"
        fi
        dir="$(dirname "$dir")"
    done
    runuser -u intelmq -- "$VENV/bin/python" -c "import intelmq_crossborder.bots" \
        || { log "the intelmq user cannot import the package from $VENV"; exit 1; }
fi

apt_install() {
    if [ "$(id -u)" != "0" ]; then log "cannot install $* without root"; return 1; fi
    log "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

redis_up() { "$VENV/bin/python" -c "import redis,sys; sys.exit(0 if redis.Redis(host='127.0.0.1', port=6379, socket_timeout=1).ping() else 1)" 2>/dev/null; }

# 3. Redis
if ! redis_up; then
    command -v redis-server >/dev/null || apt_install redis-server
    log "starting redis-server on 127.0.0.1:6379"
    redis_dir="$(mktemp -d /tmp/intelmq-crossborder-redis.XXXXXX)"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir "$redis_dir" --logfile "$redis_dir/redis.log"
    for _ in $(seq 50); do redis_up && break; sleep 0.2; done
    redis_up || { log "Redis did not come up"; exit 1; }
fi

# GnuPG: OpenPGP signatures of CSAF advisories (collector verifies, output signs);
# the tests that need it are skipped without it.
command -v gpg >/dev/null || apt_install gnupg || log "gpg not installed; OpenPGP tests will be skipped"

# 4. RabbitMQ, only where asked for (the AMQP pipeline tests skip without it)
if [ "${ENSURE_RABBITMQ:-0}" = "1" ]; then
    rabbit_up() { "$VENV/bin/python" -c "import socket; socket.create_connection(('127.0.0.1', 5672), 1).close()" 2>/dev/null; }
    if ! rabbit_up; then
        command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server || true
        if command -v rabbitmq-server >/dev/null; then
            log "starting rabbitmq-server"
            rabbitmq-server -detached || true
            for _ in $(seq 60); do rabbit_up && break; sleep 1; done
        fi
        rabbit_up || log "RabbitMQ is not answering on 127.0.0.1:5672; AMQP tests will be skipped"
    fi
fi
exit 0
