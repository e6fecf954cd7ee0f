#!/usr/bin/env bash
# Creates the two local base images the Containerfile defaults to, for hosts
# that cannot pull from a registry (`just container-bases` runs this for the
# images that do not exist yet). Needs root, podman and debootstrap.
#
#   container/bases.sh build   [IMAGE]  Debian minbase from debootstrap, imported
#                                       (default localhost/debian-base:bookworm)
#   container/bases.sh runtime [IMAGE]  a distroless-like runtime: glibc, libgcc_s,
#                                       CA certificates, a nonroot user, no shell
#                                       (default localhost/debian-runtime:bookworm),
#                                       built from the build image (BUILD_BASE), so
#                                       its glibc matches the one llmproxy links to
#
# Environment: SUITE (bookworm), MIRROR (http://deb.debian.org/debian),
# SECURITY_MIRROR (http://deb.debian.org/debian-security), BUILD_BASE.
set -euo pipefail
cd "$(dirname "$0")"

SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
BUILD_BASE=${BUILD_BASE:-localhost/debian-base:$SUITE}

build_base() {
    local image=${1:-$BUILD_BASE}
    command -v debootstrap >/dev/null || { echo "bases.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
    local tmp
    tmp=$(mktemp -d /var/tmp/llmproxy-debootstrap.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    local r=$tmp/rootfs
    echo "bases.sh: debootstrap --variant=minbase $SUITE (about a minute)" >&2
    debootstrap --variant=minbase "$SUITE" "$r" "$MIRROR" >"$tmp/debootstrap.log" 2>&1 \
        || { tail -20 "$tmp/debootstrap.log" >&2; exit 1; }
    printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
        "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SECURITY_MIRROR" "$SUITE" >"$r/etc/apt/sources.list"
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin \
        "$r"/var/lib/apt/lists/* "$r"/var/log/* "$r"/tmp/*
    # debootstrap copies the host's; podman provides them at run time.
    : >"$r/etc/resolv.conf"
    : >"$r/etc/hostname"
    tar --numeric-owner -C "$r" -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' - "$image"
}

runtime_base() {
    local image=${1:-localhost/debian-runtime:$SUITE}
    podman image exists "$BUILD_BASE" || build_base "$BUILD_BASE"
    podman build --isolation chroot --pull=never --layers=false --build-arg "BASE=$BUILD_BASE" \
        -f Containerfile.runtime -t "$image" .
}

case "${1:-}" in
    build) build_base "${2:-}" ;;
    runtime) runtime_base "${2:-}" ;;
    *) echo "usage: $0 build|runtime [IMAGE]" >&2; exit 2 ;;
esac
