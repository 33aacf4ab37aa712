#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine of this project's kind (Debian, Rust via rustup,
# root): installs what the tests need, then format check, clippy, and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)   # tests/cli.rs runs the corpus generator
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)   # tests/prometheus_client.rs runs a real Prometheus
command -v amtool >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
command -v busybox >/dev/null 2>&1 || need_apt+=(busybox-static)   # tests/docker_source.rs builds its test image from it   # tests/alerts.rs: amtool, a real Alertmanager
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)   # tests/packaging.rs rates the systemd unit
command -v groff >/dev/null 2>&1 || need_apt+=(groff-base)   # tests/packaging.rs renders the man page
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "==> installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    # Where services may start, the package starts one on :9090; the tests run their own
    # instances on free ports and never use it, so stop it (it would only hold the port).
    if [[ " ${need_apt[*]} " == *" prometheus "* ]]; then
        service prometheus stop >/dev/null 2>&1 || true
    fi
    if [[ " ${need_apt[*]} " == *" prometheus-alertmanager "* ]]; then
        service prometheus-alertmanager stop >/dev/null 2>&1 || true   # :9093, unused too
    fi
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# tests/kubernetes.rs validates deploy/kubernetes with PyPI's kubernetes-validate (core kinds) and
# tests/data/k8s-crds/validate.py (jsonschema, PyYAML): a venv under the target dir, made once.
venv="${CARGO_TARGET_DIR:-target}/test-venv"
if ! "$venv/bin/python" -c 'import kubernetes_validate, jsonschema, yaml' >/dev/null 2>&1; then
    echo "==> installing kubernetes-validate, jsonschema, PyYAML into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate jsonschema pyyaml
fi
K8S_TEST_PYTHON="$(cd "$venv/bin" && pwd)/python"
export K8S_TEST_PYTHON

echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast
else
    cargo test --locked --no-fail-fast
fi
