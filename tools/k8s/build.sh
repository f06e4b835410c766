#!/usr/bin/env bash
# Builds (or reuses) the real parts the test suite starts: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl and helm from Go modules, and Prometheus from
# Debian's package. Everything lands in $SOAR_CACHE (outside the repository), keyed by version, so
# a second run only checks that the files are there.
#
#   ${SOAR_CACHE:-~/.cache/soar}/k8s/<kubernetes version>/bin/{etcd,kube-*,kubectl,helm}
#   ${SOAR_CACHE:-~/.cache/soar}/prometheus/<debian version>/usr/bin/prometheus
#
# Versions live in the wrapper modules' go.mod files beside this script (and go.sum pins every
# dependency). Parallelism: all cores when CI=true, half of them otherwise (the machine is shared
# with other work); SOAR_BUILD_JOBS overrides.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${SOAR_CACHE:-$HOME/.cache/soar}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -mod=readonly"

log() { printf '[k8s-bins] %s\n' "$*" >&2; }
die() { printf '[k8s-bins] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go is not on PATH (Go >= 1.26 builds the control plane)"
log "$(go version), $(nproc) cores, cache $cache"

cores=$(nproc)
if [[ -n "${SOAR_BUILD_JOBS:-}" ]]; then
    jobs=$SOAR_BUILD_JOBS
elif [[ "${CI:-}" == "true" ]]; then
    jobs=$cores
else
    jobs=$(( cores / 2 > 0 ? cores / 2 : 1 ))
fi

# module_version DIR MODULE: the version DIR's go.mod selects for MODULE.
module_version() {
    (cd "$1" && go list -m -f '{{.Version}}' "$2")
}

# build_tools DIR OUTDIR LDFLAGS NAME=PACKAGE...: builds the missing binaries in one go command,
# so shared packages compile once, then moves them into OUTDIR (never a half-written file there).
build_tools() {
    local dir=$1 out=$2 ldflags=$3
    shift 3
    local pkgs=() names=() spec
    for spec in "$@"; do
        if [[ -x "$out/${spec%%=*}" ]]; then
            log "reuse $out/${spec%%=*}"
        else
            names+=("${spec%%=*}")
            pkgs+=("${spec#*=}")
        fi
    done
    ((${#pkgs[@]})) || return 0
    local tmp
    tmp=$(mktemp -d "$out/.build.XXXXXX")
    log "build ${names[*]} in $dir (go build -p $jobs; cold, this takes minutes)"
    local start=$SECONDS
    if ! (cd "$dir" && go build -p "$jobs" -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}"); then
        rm -rf "$tmp"
        die "go build failed in $dir for: ${pkgs[*]}"
    fi
    local i
    for i in "${!names[@]}"; do
        # go names a binary after the last path element that is not a major version (/v3).
        local base=${pkgs[$i]}
        [[ "$base" =~ /v[0-9]+$ ]] && base=${base%/*}
        local built="$tmp/${base##*/}"
        [[ -x "$built" ]] || { rm -rf "$tmp"; die "go build produced no $built"; }
        mv -f "$built" "$out/${names[$i]}"
        log "built $out/${names[$i]}"
    done
    rm -rf "$tmp"
    log "took $((SECONDS - start)) s"
}

# Prometheus: Debian's package, unpacked rather than installed (an install starts a daemon).
prom_root="$cache/prometheus"
existing=$(find "$prom_root" -mindepth 4 -maxdepth 4 -path "*/usr/bin/prometheus" \
    -not -path "*.partial/*" 2>/dev/null \
    | sort -V | tail -n 1 || true)
if [[ -n "$existing" ]]; then
    log "reuse $existing"
else
    command -v apt-get >/dev/null || die "apt-get is missing: Prometheus comes from Debian's package"
    version=$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [[ -z "$version" || "$version" == "(none)" ]]; then
        log "apt-get update (no package list knows prometheus yet)"
        apt-get update -q >&2 || die "apt-get update failed"
        version=$(apt-cache policy prometheus | awk '/Candidate:/ {print $2}')
    fi
    [[ -n "$version" && "$version" != "(none)" ]] || die "no Debian package 'prometheus' found"
    dest="$prom_root/${version//[:~]/_}"
    tmp=$(mktemp -d)
    log "apt-get download prometheus=$version"
    if ! (cd "$tmp" && apt-get download -q "prometheus=$version" >&2); then
        log "download failed; refreshing the package lists once"
        apt-get update -q >&2 || die "apt-get update failed"
        version=$(apt-cache policy prometheus | awk '/Candidate:/ {print $2}')
        dest="$prom_root/${version//[:~]/_}"
        (cd "$tmp" && apt-get download -q "prometheus=$version" >&2) || die "apt-get download failed"
    fi
    mkdir -p "$prom_root"
    rm -rf "$dest.partial"
    dpkg-deb -x "$tmp"/prometheus_*.deb "$dest.partial" || die "dpkg-deb -x failed"
    rm -rf "$tmp"
    [[ -x "$dest.partial/usr/bin/prometheus" ]] || die "the package has no usr/bin/prometheus"
    mv "$dest.partial" "$dest"
    log "unpacked $dest/usr/bin/prometheus"
    existing="$dest/usr/bin/prometheus"
fi

k8s_version=$(module_version "$here/kubernetes" k8s.io/kubernetes) \
    || die "cannot resolve k8s.io/kubernetes in $here/kubernetes/go.mod (see the go error above)"
etcd_version=$(module_version "$here/etcd" go.etcd.io/etcd/server/v3) \
    || die "cannot resolve go.etcd.io/etcd/server/v3 in $here/etcd/go.mod (see the go error above)"
helm_version=$(module_version "$here/helm" helm.sh/helm/v3) \
    || die "cannot resolve helm.sh/helm/v3 in $here/helm/go.mod (see the go error above)"
bin="$cache/k8s/$k8s_version/bin"
mkdir -p "$bin"
log "kubernetes $k8s_version, etcd $etcd_version, helm $helm_version -> $bin"

# etcd and helm are versioned apart from Kubernetes: a stamp beside each says which one is there.
for pair in "etcd:$etcd_version" "helm:$helm_version"; do
    name=${pair%%:*}
    if [[ -x "$bin/$name" && "$(cat "$bin/.$name.version" 2>/dev/null)" != "${pair#*:}" ]]; then
        log "$bin/$name is not ${pair#*:}: rebuilding it"
        rm -f "$bin/$name"
    fi
done

minor=${k8s_version#v1.}
minor=${minor%%.*}
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cb=k8s.io/component-base/version
build_tools "$here/kubernetes" "$bin" \
    "-s -w -X $cb.gitVersion=$k8s_version -X $cb.gitMajor=1 -X $cb.gitMinor=$minor \
-X $cb.gitTreeState=clean -X $cb.buildDate=$build_date" \
    kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
    kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
    kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
    kubectl=k8s.io/kubernetes/cmd/kubectl

build_tools "$here/etcd" "$bin" "-s -w" etcd=go.etcd.io/etcd/server/v3
echo "$etcd_version" >"$bin/.etcd.version"

build_tools "$here/helm" "$bin" "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version" \
    helm=helm.sh/helm/v3/cmd/helm
echo "$helm_version" >"$bin/.helm.version"

for name in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm; do
    [[ -x "$bin/$name" ]] || die "$bin/$name is missing after the build"
done
"$bin/kubectl" version --client=true >&2
"$existing" --version 2>&1 | head -n 1 >&2
log "ready: $bin"
