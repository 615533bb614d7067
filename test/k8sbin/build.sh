#!/usr/bin/env bash
# Builds the test environment's Kubernetes binaries from the Go module proxy
# into $1 (default bin/k8s): kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok and kwok's stage files. Idempotent: a stamp of
# the build modules' go.mod/go.sum and this script skips a build whose inputs
# have not changed. Go's build cache makes a rebuild after a fresh clone fast.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "${1:-$here/../../bin/k8s}" && cd "${1:-$here/../../bin/k8s}" && pwd)

stamp=$(cat "$here"/build.sh "$here"/*/go.mod "$here"/*/go.sum | sha256sum | cut -d' ' -f1)
need=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwok-stages)
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ]; then
	complete=1
	for f in "${need[@]}"; do [ -e "$out/$f" ] || complete=0; done
	if [ "$complete" = 1 ]; then
		echo "test-bins: up to date in $out"
		exit 0
	fi
fi

echo "test-bins: building into $out (kube-apiserver takes ~5 min on 2 cores when Go's build cache is cold)"
# Stamp the version the release build would: the apiserver reports it, and
# Helm's .Capabilities.KubeVersion comes from it.
kube_version=$(cd "$here/kubernetes" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
kube_minor=$(echo "$kube_version" | cut -d. -f2)
ldflags="-X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$kube_minor -X k8s.io/component-base/version.gitTreeState=clean"
(cd "$here/kubernetes" && go build -ldflags "$ldflags" -o "$out/" \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler \
	k8s.io/kubernetes/cmd/kubectl)
(cd "$here/etcd" && go build -o "$out/etcd" go.etcd.io/etcd/server/v3)
(cd "$here/kwok" && go build -o "$out/kwok" sigs.k8s.io/kwok/cmd/kwok)

# kwok needs stage files to do anything ("no stages found" otherwise): the
# fast node and pod lifecycles, node heartbeats with leases so the node
# lifecycle controller never taints a fake node as unreachable, and the
# chaos stage that fails a pod labelled
# pod-container-running-failed.stage.kwok.x-k8s.io=true (a Job that fails).
kwok_dir=$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
rm -rf "$out/kwok-stages" && mkdir -p "$out/kwok-stages"
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
	pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml pod/chaos/pod-container-running-failed.yaml; do
	install -m 0644 "$kwok_dir/kustomize/stage/$f" "$out/kwok-stages/"
done

echo "$stamp" >"$out/.stamp"
echo "test-bins: done"
