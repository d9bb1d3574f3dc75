#!/usr/bin/env bash
# Builds (once) the real Kubernetes control plane the kubestore tests run
# against: etcd from Debian's etcd-server package, kube-apiserver and kubectl
# from the Go module k8s.io/kubernetes at a pinned version. Nothing here can be
# downloaded as a prebuilt binary, so kube-apiserver is compiled through a small
# wrapper module (a plain `go install` refuses k8s.io/kubernetes because its
# go.mod replaces the k8s.io/* staging modules with local folders).
#
# The binaries are cached outside the source tree, in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/jumpmesh/k8s/<version>/
# so CI on the same machine and later runs reuse them: cold about 10 minutes on
# 2 cores, then well under a second. The folder is printed on stdout and is what
# KUBEBUILDER_ASSETS / JUMPMESH_K8S_ASSETS should point at.
#
# Idempotent and safe to run concurrently: a lock serialises builders, and a
# stamp file marks a complete cache.
set -euo pipefail

# The Kubernetes release the tests run against; it matches the k8s.io/*
# v0.37.x libraries in go.mod (v1.X.Y ships staging modules v0.X.Y).
K8S_VERSION="${K8S_VERSION:-v1.37.2}"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/jumpmesh/k8s/${K8S_VERSION}"
stamp="$cache/.complete"
log() { echo "build-apiserver: $*" >&2; }

if [ -f "$stamp" ] && [ -x "$cache/kube-apiserver" ] && [ -x "$cache/kubectl" ] && [ -x "$cache/etcd" ]; then
	echo "$cache"
	exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
if ! flock -n 9; then
	log "another build holds $cache/.lock; waiting for it"
	flock 9
fi
# The build we waited for may have finished the job.
if [ -f "$stamp" ] && [ -x "$cache/kube-apiserver" ] && [ -x "$cache/kubectl" ] && [ -x "$cache/etcd" ]; then
	echo "$cache"
	exit 0
fi

# etcd: Debian's package is enough (the API server falls back gracefully from
# the watch-progress requests etcd 3.4 lacks).
if [ ! -x "$cache/etcd" ]; then
	if ! command -v etcd >/dev/null 2>&1; then
		if [ "$(id -u)" -ne 0 ]; then
			log "etcd is missing; run this script as root or: apt-get install etcd-server"
			exit 1
		fi
		log "installing Debian etcd-server"
		export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
		# The package enables a system etcd on :2379; the tests start their
		# own on free ports, so the system one is only in the way.
		if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q etcd 2>/dev/null; then
			systemctl disable --now etcd >/dev/null 2>&1 || true
		fi
	fi
	cp "$(command -v etcd)" "$cache/etcd.tmp"
	mv "$cache/etcd.tmp" "$cache/etcd"
fi

# kube-apiserver and kubectl through a generated wrapper module.
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -mod=mod"
wrapper="$cache/wrapper"
mkdir -p "$wrapper"
log "resolving k8s.io/kubernetes@$K8S_VERSION"
k8s_gomod="$(cd "$wrapper" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
if [ ! -f "$k8s_gomod" ]; then
	log "could not locate the go.mod of k8s.io/kubernetes@$K8S_VERSION (got '$k8s_gomod')"
	exit 1
fi
{
	echo "module jumpmesh.dev/k8s-wrapper"
	echo
	echo "go $(go env GOVERSION | sed 's/^go//')"
	echo
	echo "require k8s.io/kubernetes $K8S_VERSION"
	echo
	# Every staging module that k8s.io/kubernetes points at a local folder is
	# published on its own at the matching v0 version.
	sed -n 's#^[[:space:]]*\(replace[[:space:]]\{1,\}\)\{0,1\}\(k8s\.io/[^[:space:]]*\) => \./staging/.*#replace \2 => \2 '"$STAGING_VERSION"'#p' "$k8s_gomod"
} >"$wrapper/go.mod"
if ! grep -q '^replace ' "$wrapper/go.mod"; then
	log "found no staging replace lines in $k8s_gomod"
	exit 1
fi

ver="k8s.io/component-base/version"
ldflags="-s -w -X $ver.gitVersion=$K8S_VERSION -X $ver.gitMajor=1 -X $ver.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
for cmd in kube-apiserver kubectl; do
	if [ -x "$cache/$cmd" ]; then continue; fi
	log "building $cmd $K8S_VERSION (minutes when cold)"
	start=$SECONDS
	# nice: the machine is shared; the build is long anyway.
	(cd "$wrapper" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$cache/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
	mv "$cache/$cmd.tmp" "$cache/$cmd"
	log "built $cmd in $((SECONDS - start)) s"
done

touch "$stamp"
echo "$cache"
