#!/bin/sh
# Check, on this machine's real update-ca-certificates, that the Debian hook
# regenerates the combined CA bundle, and that TLS clients accept a server
# certificate signed by the proxy CA through that bundle.
#
# Usage (root, in testbed::Sandbox): tests/ca-update-hook.sh HELPER REPO SCRATCH_DIR
# Everything it writes lands in the sandbox's overlays over /etc and /usr and its /tmp:
# the real /etc and /usr/local are untouched.
set -eu

helper=$1
repo=$2
scratch=$3

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

mkdir -p "$scratch/pki"
cd "$scratch/pki"

install -m 0755 "$helper" /usr/bin/pipelock-containment
install -m 0755 "$repo/pkg/ca-certificates-hook/pipelock-containment" \
    /etc/ca-certificates/update.d/pipelock-containment
mkdir -p /etc/pipelock-containment /etc/pipelock /usr/local/share/ca-certificates
# Stand-in accounts that exist on any Debian: nobody as the agent, daemon as the proxy.
sed -e 's/^agent = "cc-agent"/agent = "nobody"/' \
    -e 's/^proxy = "pipelock-proxy"/proxy = "daemon"/' \
    "$repo/pkg/containment.toml" >/etc/pipelock-containment/containment.toml

# The proxy's CA (key left world-readable on purpose) and a server certificate it signs.
ca_ext="-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
# shellcheck disable=SC2086
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj "/CN=ca-e2e proxy CA" $ca_ext \
    -keyout /etc/pipelock/ca-key.pem -out /etc/pipelock/ca.pem 2>/dev/null
chmod 0644 /etc/pipelock/ca-key.pem
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=internet.test" \
    -keyout server-key.pem -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:internet.test\nbasicConstraints=CA:FALSE\n' >server.ext
openssl x509 -req -in server.csr -CA /etc/pipelock/ca.pem -CAkey /etc/pipelock/ca-key.pem \
    -CAcreateserial -days 30 -extfile server.ext -out server.pem 2>/dev/null

bundle=/etc/pipelock/combined-ca.pem
pipelock-containment ca refresh
[ "$(stat -c '%U:%G %a' $bundle)" = "root:root 644" ] || fail "bundle owner/mode: $(stat -c '%U:%G %a' $bundle)"
[ "$(stat -c '%U %a' /etc/pipelock/ca-key.pem)" = "daemon 600" ] || fail "key owner/mode: $(stat -c '%U %a' /etc/pipelock/ca-key.pem)"
before=$(grep -c -- '-----BEGIN CERTIFICATE-----' $bundle)
system=$(grep -c -- '-----BEGIN CERTIFICATE-----' /etc/ssl/certs/ca-certificates.crt)
[ "$before" -eq $((system + 1)) ] || fail "bundle has $before certificates, system $system + 1 expected"
echo "ok: initial bundle: $system system roots + proxy CA"

# OpenSSL's verifier accepts the proxy-signed server certificate through the bundle only.
openssl verify -CAfile $bundle server.pem >/dev/null || fail "openssl verify with the bundle"
if openssl verify -CAfile /etc/ssl/certs/ca-certificates.crt server.pem >/dev/null 2>&1; then
    fail "the system bundle alone must not verify the proxy-signed certificate"
fi
echo "ok: openssl verify accepts the proxy-signed certificate through the bundle"

# A local CA added the Debian way reaches the bundle through the hook.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj "/CN=ca-e2e local CA" -addext basicConstraints=critical,CA:TRUE \
    -keyout local-key.pem -out /usr/local/share/ca-certificates/ca-e2e-local.crt 2>/dev/null
inode=$(stat -c %i $bundle)
update-ca-certificates >update.log 2>&1 || { cat update.log >&2; fail "update-ca-certificates"; }
grep -q "Running hooks" update.log || fail "update-ca-certificates ran no hooks"
grep -q "pipelock-containment" update.log && { cat update.log >&2; fail "the hook printed something"; }
after=$(grep -c -- '-----BEGIN CERTIFICATE-----' $bundle)
[ "$after" -eq $((before + 1)) ] || fail "after update-ca-certificates: $after certificates, $((before + 1)) expected"
line=$(sed -n 2p /usr/local/share/ca-certificates/ca-e2e-local.crt)
[ "$(grep -c -x -- "$line" $bundle)" -eq 1 ] || fail "the local CA is not in the bundle exactly once"
[ "$(stat -c %i $bundle)" != "$inode" ] || fail "the bundle was not rewritten"
echo "ok: update-ca-certificates regenerated the bundle through the hook ($after certificates)"

# Unchanged inputs: no write.
inode=$(stat -c %i $bundle)
pipelock-containment ca refresh | grep -q ': unchanged (' || fail "second refresh did not say unchanged"
[ "$(stat -c %i $bundle)" = "$inode" ] || fail "an unchanged bundle was rewritten"
echo "ok: unchanged inputs leave the bundle alone"

# A TLS client through the bundle, on loopback in a private network namespace.
if command -v curl >/dev/null && unshare --net true 2>/dev/null; then
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --net sh -eu -c '
        ip link set lo up
        openssl s_server -quiet -accept 127.0.0.1:8443 -cert server.pem -key server-key.pem -www >/dev/null 2>&1 &
        server=$!
        trap "kill $server" EXIT
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            curl -s -o /dev/null --cacert "$1" --resolve internet.test:8443:127.0.0.1 https://internet.test:8443/ && break
            sleep 0.2
        done
        curl -sS -o /dev/null --cacert "$1" --resolve internet.test:8443:127.0.0.1 https://internet.test:8443/
        if curl -s -o /dev/null --cacert /etc/ssl/certs/ca-certificates.crt --resolve internet.test:8443:127.0.0.1 https://internet.test:8443/; then
            echo "curl accepted the proxy-signed certificate without the proxy CA" >&2
            exit 1
        fi
    ' sh "$bundle" || fail "curl through the bundle"
    echo "ok: curl verifies https://internet.test (signed by the proxy CA) through the bundle, without -k"
else
    echo "SKIPPED: curl check: needs curl and network namespaces" >&2
fi
