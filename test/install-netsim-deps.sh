#!/bin/sh
# Installs the Debian packages the kernel lab (netsim/kernel) drives:
# ip and tc (iproute2) for namespaces, veths and tbf; nft (nftables) for NAT
# and the router firewall; iptables for the NFQUEUE rule that feeds the delay
# program (this kernel has no nft "queue" expression, only the xt target);
# conntrack for looking at NAT state by hand.
#
# Idempotent and quiet: it asks apt only when a package is missing, so a second
# run costs one dpkg-query. Needs root (CI and the lab's tests run as root).
set -eu

packages="iproute2 nftables iptables conntrack"

missing=""
for p in $packages; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "install-netsim-deps: missing:$missing; run this script as root" >&2
	exit 1
fi

echo "install-netsim-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing >/dev/null
