#!/usr/bin/env bash
# Builds the FROM scratch variant of the image from a binary linked here, and
# checks it, where base images cannot be pulled but podman runs:
#
#   scripts/scratch-image.sh            (needs podman and runc, as root)
#
# It links gcore-iam-bulk statically (glibc, `-C target-feature=+crt-static`,
# a debug build in $STATIC_TARGET_DIR, default target/static), puts it and this machine's CA bundle into
# an image exactly as the Dockerfile's `scratch` stage lays them out, then runs
# the image: --version, the user it runs as, and an export over TLS from the
# tool's own simulator on 127.0.0.1 behind a private CA (refused without the
# CA, accepted with --ca-cert and with SSL_CERT_FILE), with --network host.
# What it cannot check is the Dockerfile's build stages: they need the Rust
# and distroless base images from their registries.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
sim_pid=
cleanup() {
    [[ -n $sim_pid ]] && kill "$sim_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== static build" >&2
static_dir=${STATIC_TARGET_DIR:-target/static}
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --locked --target x86_64-unknown-linux-gnu --target-dir "$static_dir" >&2
bin=$static_dir/x86_64-unknown-linux-gnu/debug/gcore-iam-bulk
file "$bin" | grep -q 'static' || { echo "not statically linked: $(file "$bin")" >&2; exit 2; }

echo "== image" >&2
cp "$bin" "$work/gcore-iam-bulk"
cp /etc/ssl/certs/ca-certificates.crt "$work/ca-certificates.crt"
# The scratch stage of the Dockerfile, with its inputs taken from here.
sed -n '/^FROM scratch AS scratch/,/^CMD/p' Dockerfile \
    | sed -e 's|^COPY --from=build-static /etc/ssl/certs/ca-certificates.crt |COPY ca-certificates.crt |' \
          -e 's|^COPY --from=build-static /usr/local/bin/gcore-iam-bulk-static |COPY gcore-iam-bulk |' \
    > "$work/Containerfile"
grep -q -- '--from' "$work/Containerfile" && { echo "unexpected COPY --from" >&2; exit 2; }
# The default ulimits need privileges this sandbox may lack; crun may not
# run under hybrid cgroups, runc does.
printf '[containers]\ndefault_ulimits = []\n' > "$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"
image=localhost/gcore-iam-bulk:scratch-check
podman build -q -t "$image" "$work" >&2
run() { podman --runtime runc run --rm --network host "$@"; }

fail=0
check() { # check NAME CONDITION-OUTPUT...
    if [[ $2 == ok ]]; then echo "ok   $1"; else echo "FAIL $1: $2"; fail=1; fi
}

version=$(run "$image" --version)
[[ $version == "gcore-iam-bulk "* ]] && check "--version in the image ($version)" ok \
    || check "--version" "$version"
user=$(podman image inspect "$image" --format '{{.Config.User}}')
[[ $user == 65532:65532 ]] && check "runs as 65532:65532" ok || check "user" "$user"

echo "== TLS with a private CA" >&2
( cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
      -days 1 -subj "/CN=scratch check CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
      -subj "/CN=simulator" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
      -days 1 -extfile ext.cnf 2>/dev/null
  chmod 644 ca.pem
  mkdir out && chmod 777 out )
mkfifo "$work/sim.out"
"$bin" simulate --listen 127.0.0.1:0 \
    --accounts 1-4 --token sim-token --tls-cert "$work/server.pem" --tls-key "$work/server.key" \
    > "$work/sim.out" 2>/dev/null &
sim_pid=$!
read -r line < "$work/sim.out"
url=${line#listening on }
[[ $url == https://127.0.0.1:* ]] || { echo "simulator: $line" >&2; exit 2; }

common=(-e GCORE_API_KEY=sim-token -v "$work/out:/work" -v "$work/ca.pem:/ca.pem:ro")
if out=$(run "${common[@]}" "$image" export -o /work/none.csv --api-url "$url" --max-attempts 1 2>&1); then
    check "refused without the CA" "it succeeded"
else
    [[ $out == *UnknownIssuer*--ca-cert* ]] && check "refused without the CA, with advice" ok \
        || check "refused without the CA" "$out"
fi
out=$(run "${common[@]}" "$image" export -o /work/flag.csv --api-url "$url" --ca-cert /ca.pem 2>&1) \
    && [[ $(wc -l < "$work/out/flag.csv") == 5 ]] && check "export with --ca-cert" ok \
    || check "export with --ca-cert" "$out"
out=$(run "${common[@]}" -e SSL_CERT_FILE=/ca.pem "$image" export -o /work/env.csv --api-url "$url" 2>&1) \
    && [[ $(wc -l < "$work/out/env.csv") == 5 ]] && check "export with SSL_CERT_FILE" ok \
    || check "export with SSL_CERT_FILE" "$out"
owner=$(stat -c %u "$work/out/flag.csv")
[[ $owner == 65532 ]] && check "files written by uid 65532" ok || check "owner" "$owner"
# The image's own bundle parses (nothing listens on port 9: the run gets as far as connecting).
out=$(run -e GCORE_API_KEY=x "$image" export -o /work/x.csv --api-url https://127.0.0.1:9 \
    --ca-cert /etc/ssl/certs/ca-certificates.crt --max-attempts 1 2>&1 || true)
[[ $out == *"Connection refused"* ]] && check "the image's CA bundle loads" ok \
    || check "the image's CA bundle loads" "$out"

podman rmi -f "$image" >/dev/null
exit $fail
