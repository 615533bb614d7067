#!/usr/bin/env bash
# Builds the test environment's Kubernetes binaries from the Go module proxy
# into $1 (default bin/k8s): the ones named after it, or all of them:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd and
# kwok (with kwok's stage files). `make demo` names what the demo starts,
# `make test-bins` builds them all.
#
# Idempotent: each binary has a stamp of this script and its build module's
# go.mod/go.sum, and one whose stamp is current is not built again. The
# binaries of one module are built by one `go build`, so the packages they
# share compile once: kubectl adds 194 packages to the 2,455 of the three
# servers, etcd and kwok are modules of their own.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "${1:-$here/../../bin/k8s}" && cd "${1:-$here/../../bin/k8s}" && pwd)
shift || true
all=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)
want=("$@")
[ ${#want[@]} -gt 0 ] || want=("${all[@]}")

# module NAME: the build module (directory under test/k8sbin) of a binary.
module() {
	case "$1" in
	kube-apiserver | kube-controller-manager | kube-scheduler | kubectl) echo kubernetes ;;
	etcd) echo etcd ;;
	kwok) echo kwok ;;
	*)
		echo "test-bins: unknown binary $1 (known: ${all[*]})" >&2
		exit 2
		;;
	esac
}

# stamp MODULE: what a binary of MODULE is built from.
stamp() { cat "$here/build.sh" "$here/$1/go.mod" "$here/$1/go.sum" | sha256sum | cut -d' ' -f1; }

# current NAME: whether NAME is built and its stamp is current.
current() {
	local f="$out/$1" s="$out/.stamp-$1"
	[ "$1" != kwok ] || [ -d "$out/kwok-stages" ] || return 1
	[ -x "$f" ] && [ -f "$s" ] && [ "$(cat "$s")" = "$(stamp "$(module "$1")")" ]
}

stale=()
for name in "${want[@]}"; do
	module "$name" >/dev/null
	current "$name" || stale+=("$name")
done
if [ ${#stale[@]} -eq 0 ]; then
	echo "test-bins: up to date in $out (${want[*]})"
	exit 0
fi
# The stamp of the previous layout, one for every binary.
rm -f "$out/.stamp"

has() {
	local n
	for n in "${stale[@]}"; do [ "$n" = "$1" ] && return 0; done
	return 1
}

echo "test-bins: building ${stale[*]} into $out (minutes when Go's build cache is cold: README.md, Quickstart)"
kube=()
for name in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
	has "$name" && kube+=("k8s.io/kubernetes/cmd/$name")
done
if [ ${#kube[@]} -gt 0 ]; then
	# Stamp the version the release build would: the apiserver reports it,
	# and Helm's .Capabilities.KubeVersion comes from it.
	kube_version=$(cd "$here/kubernetes" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
	kube_minor=$(echo "$kube_version" | cut -d. -f2)
	ldflags="-X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$kube_minor -X k8s.io/component-base/version.gitTreeState=clean"
	(cd "$here/kubernetes" && go build -ldflags "$ldflags" -o "$out/" "${kube[@]}")
fi
if has etcd; then
	(cd "$here/etcd" && go build -o "$out/etcd" go.etcd.io/etcd/server/v3)
fi
if has kwok; then
	(cd "$here/kwok" && go build -o "$out/kwok" sigs.k8s.io/kwok/cmd/kwok)

	# kwok needs stage files to do anything ("no stages found" otherwise):
	# the fast node and pod lifecycles, node heartbeats with leases so the
	# node lifecycle controller never taints a fake node as unreachable, and
	# the chaos stage that fails a pod labelled
	# pod-container-running-failed.stage.kwok.x-k8s.io=true (a Job that fails).
	kwok_dir=$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
	rm -rf "$out/kwok-stages" && mkdir -p "$out/kwok-stages"
	for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
		pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml pod/chaos/pod-container-running-failed.yaml; do
		install -m 0644 "$kwok_dir/kustomize/stage/$f" "$out/kwok-stages/"
	done
fi

for name in "${stale[@]}"; do
	stamp "$(module "$name")" >"$out/.stamp-$name"
done
echo "test-bins: done"
