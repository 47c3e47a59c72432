#!/usr/bin/env bash
# Installs the servers that scripts/bench.sh compares flashpolicyd with.
# scripts/bench.sh never installs anything itself: it skips a missing peer and
# says why. Run this once, where you are allowed to install packages:
#
#   scripts/peers-setup.sh            # every peer
#   scripts/peers-setup.sh nginx      # only nginx (Debian/Ubuntu: apt-get)
#   scripts/peers-setup.sh node       # only node's policyfile (npm, local)
#   scripts/peers-setup.sh gateway    # haproxy, sslh, websockify (apt-get)
#
# nginx: Debian's nginx-light plus the stream module (libnginx-mod-stream),
#   system-wide through apt-get (sudo when not root). The bench runs its own
#   nginx instance with its own config; the distribution's service is not used.
# gateway: HAProxy and sslh (the game-port gateway peers) and websockify (the
#   WebSocket bridge peer), system-wide through apt-get like nginx. The bench
#   runs its own instances with its own configs (scripts/peers/*.cfg).
# node: `npm install` of the `policyfile` package into scripts/peers/node_modules
#   (ignored by git), at the version pinned in scripts/peers/package.json.
set -euo pipefail
peers="$(cd "$(dirname "$0")/peers" && pwd)"
want="${1:-all}"

# apt_install WHAT PKG...: system-wide through apt-get (sudo when not root).
apt_install() {
    local what="$1"; shift
    if ! command -v apt-get >/dev/null; then
        echo "peers-setup: no apt-get here; install $what yourself" >&2
        return 1
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    "${sudo[@]}" apt-get install -y --no-install-recommends "$@"
}

install_nginx() { apt_install "nginx with its stream module" nginx-light libnginx-mod-stream; }
install_gateway() { apt_install "haproxy, sslh and websockify" haproxy sslh websockify; }

install_node() {
    if ! command -v npm >/dev/null; then
        echo "peers-setup: npm not found; install Node.js and npm first" >&2
        return 1
    fi
    (cd "$peers" && npm install --no-package-lock --no-audit --no-fund)
}

case "$want" in
    all) install_nginx; install_gateway; install_node ;;
    nginx) install_nginx ;;
    node) install_node ;;
    gateway) install_gateway ;;
    *) echo "usage: $0 [all|nginx|node|gateway]" >&2; exit 2 ;;
esac
echo "peers-setup: done; scripts/bench.sh will now include the installed peers"
