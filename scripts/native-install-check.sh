#!/usr/bin/env bash
# Installs the sidecar the way the README's "Without Docker" quick start says, in a clean folder, and runs it
# against a real Orthanc: npm ci, npm run build, npm prune --omit=dev, then `node dist/main.js`. Checks that
# /healthz and /readyz answer, that a C-ECHO from a known peer succeeds, and that SIGTERM ends the sidecar
# and frees its ports. Prints the elapsed time; exits non-zero on any failure.
#
# It starts its own Orthanc (Debian's binary) on free loopback ports with storage in /dev/shm, and ends
# only the processes it started, by their pid: never an Orthanc or a sidecar of anyone else.
# Needs: git, node/npm (>= 20), Orthanc, echoscu (dcmtk), curl. Set KEEP=1 to keep the temp folders.
set -euo pipefail

started=$(date +%s.%N)
repo=$(cd "$(dirname "$0")/.." && pwd)
orthanc_bin=${ORTHANC_BIN:-/usr/sbin/Orthanc}
base=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
work=$(mktemp -d "$base/stgcmt-native-check.XXXXXX")
orthanc_pid=''
sidecar_pid=''

step() { printf '[native-install-check +%ss] %s\n' "$(elapsed)" "$*"; }
elapsed() { awk -v now="$(date +%s.%N)" -v t0="$started" 'BEGIN { printf "%.1f", now - t0 }'; }
fail() {
  printf '[native-install-check] FAILED: %s\n' "$*" >&2
  for log in "$work/sidecar.log" "$work/orthanc/orthanc.log"; do
    [ -f "$log" ] && { printf -- '--- last lines of %s\n' "$log" >&2; tail -n 30 "$log" >&2; }
  done
  exit 1
}

cleanup() {
  local rc=$?
  # Only the pids this script started.
  if [ -n "$sidecar_pid" ] && kill -0 "$sidecar_pid" 2>/dev/null; then
    kill -KILL "$sidecar_pid" 2>/dev/null || true
    wait "$sidecar_pid" 2>/dev/null || true
  fi
  if [ -n "$orthanc_pid" ] && kill -0 "$orthanc_pid" 2>/dev/null; then
    kill -TERM "$orthanc_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$orthanc_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$orthanc_pid" 2>/dev/null || true
    wait "$orthanc_pid" 2>/dev/null || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT

for tool in git node npm curl echoscu "$orthanc_bin"; do
  command -v "$tool" >/dev/null 2>&1 || fail "missing $tool"
done

# True while something accepts connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits up to $2 seconds for URL $1 to answer 200.
wait_http() {
  local url=$1 deadline=$(($(date +%s) + $2))
  until curl -fs -o /dev/null --max-time 2 "$url"; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# Four ports the kernel says are free (held together so that they differ).
read -r orthanc_http orthanc_dicom sidecar_dicom sidecar_http < <(node -e '
  const net = require("node:net");
  const servers = [0, 1, 2, 3].map(() => net.createServer());
  Promise.all(servers.map((s) => new Promise((ok) => s.listen(0, "127.0.0.1", ok)))).then(() => {
    console.log(servers.map((s) => s.address().port).join(" "));
    servers.forEach((s) => s.close());
  });')

git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1 || fail "$repo is not a git work tree"

# 1. The project's tracked files (as a clone has them) in a clean folder. A tracked symlink is skipped: a
# workspace's node_modules link must not lead npm ci into someone else's folder.
step "copying tracked files to $work/app"
mkdir -p "$work/app"
(cd "$repo" && git ls-files -z | while IFS= read -r -d '' f; do
  [ -e "$f" ] && [ ! -L "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf -) | tar -xf - -C "$work/app"
[ ! -e "$work/app/node_modules" ] || fail "node_modules came along with the tracked files"

# 2. The README's native steps, exactly.
cd "$work/app"
step 'npm ci'
npm ci --no-audit --no-fund --loglevel=error || fail 'npm ci'
step 'npm run build'
npm run build --silent || fail 'npm run build'
step 'npm prune --omit=dev'
npm prune --omit=dev --no-audit --no-fund --loglevel=error || fail 'npm prune --omit=dev'
[ ! -e node_modules/typescript ] || fail 'npm prune left the dev dependencies'
[ -f dist/main.js ] || fail 'no dist/main.js after the build'

# 3. An Orthanc of our own.
mkdir -p "$work/orthanc"
cat >"$work/orthanc/orthanc.json" <<EOF
{
  "Name": "native-install-check",
  "StorageDirectory": "$work/orthanc/storage",
  "IndexDirectory": "$work/orthanc/index",
  "HttpPort": $orthanc_http,
  "DicomPort": $orthanc_dicom,
  "DicomAet": "ORTHANC",
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "Plugins": [],
  "DicomModalitiesInDatabase": false
}
EOF
step "starting Orthanc on HTTP $orthanc_http / DICOM $orthanc_dicom"
"$orthanc_bin" "--logfile=$work/orthanc/orthanc.log" "$work/orthanc/orthanc.json" >/dev/null 2>&1 &
orthanc_pid=$!
wait_http "http://127.0.0.1:$orthanc_http/system" 30 || fail 'Orthanc did not answer within 30 s'

# 4. The sidecar, as the systemd unit runs it: node dist/main.js. The echo's calling AE is a known peer.
cat >"$work/peers.json" <<'EOF'
{ "peers": [ { "aet": "NATIVECHECK", "host": "127.0.0.1", "port": 104 } ] }
EOF
step "starting node dist/main.js on DICOM $sidecar_dicom / HTTP $sidecar_http"
ORTHANC_URL="http://127.0.0.1:$orthanc_http" \
  STGCMT_API_TOKEN="native-install-check-$RANDOM$RANDOM$RANDOM" \
  STGCMT_DATA_DIR="$work/data" \
  STGCMT_PEERS_FILE="$work/peers.json" \
  STGCMT_DICOM_HOST=127.0.0.1 STGCMT_DICOM_PORT="$sidecar_dicom" \
  STGCMT_HTTP_HOST=127.0.0.1 STGCMT_HTTP_PORT="$sidecar_http" \
  node dist/main.js >"$work/sidecar.log" 2>&1 &
sidecar_pid=$!
wait_http "http://127.0.0.1:$sidecar_http/healthz" 30 || fail '/healthz not 200 within 30 s'
wait_http "http://127.0.0.1:$sidecar_http/readyz" 30 || fail "/readyz not 200 within 30 s: $(curl -sS "http://127.0.0.1:$sidecar_http/readyz" || true)"
step '/healthz and /readyz answer 200'

# 5. C-ECHO against the sidecar's DICOM port.
echoscu -to 10 -ta 10 -td 10 -aet NATIVECHECK -aec STGCMT 127.0.0.1 "$sidecar_dicom" || fail 'C-ECHO failed'
step 'C-ECHO from NATIVECHECK succeeded'

# 6. SIGTERM: the sidecar exits (code 0) and frees both ports.
kill -TERM "$sidecar_pid"
deadline=$(($(date +%s) + 30))
while kill -0 "$sidecar_pid" 2>/dev/null; do
  [ "$(date +%s)" -lt "$deadline" ] || fail 'the sidecar still runs 30 s after SIGTERM'
  sleep 0.1
done
code=0
wait "$sidecar_pid" || code=$?
sidecar_pid=''
[ "$code" = 0 ] || fail "the sidecar exited with code $code after SIGTERM"
for port in "$sidecar_dicom" "$sidecar_http"; do
  ! listening "$port" || fail "port $port still accepts connections after the sidecar exited"
done
step 'SIGTERM: the sidecar exited with code 0 and freed its ports'

# 7. Our Orthanc, by its pid.
kill -TERM "$orthanc_pid"
wait "$orthanc_pid" 2>/dev/null || true
orthanc_pid=''
echo "native install check passed in $(elapsed) s"
