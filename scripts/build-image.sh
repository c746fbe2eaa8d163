#!/usr/bin/env bash
# Builds the controller's OCI image, localhost/songbird:<version>, with no base image from a container
# registry: mmdebstrap makes a minimal Debian bookworm root with Python 3.11 from Debian's packages, the
# songbird wheel and its dependencies' wheels are fetched on the host (PyPI), installed into a virtualenv
# in that root with no network (/opt/songbird), and buildah commits the result.
#
# Invariants the image keeps (the Helm chart relies on them):
# - entrypoint `songbird`, default command `run`, user 65532:65532, working directory /;
# - nothing is written under / at run time: the code is byte-compiled here and PYTHONDONTWRITEBYTECODE=1,
#   so the chart's readOnlyRootFilesystem holds;
# - the tag is pyproject.toml's `version` (the one place the version lives), also in the
#   org.opencontainers.image.version label and annotation.
#
# The Debian root is cached under build/image/ as a tarball keyed on its package list and options, so only
# the first build downloads it (minutes); later builds redo the wheels and the virtualenv (seconds).
# Runs as root (mmdebstrap's root mode, `buildah mount`), as CI does; installs its own Debian tools when
# they are missing. podman and buildah read scripts/containers/*.conf through CONTAINERS_CONF and
# CONTAINERS_STORAGE_CONF, so nothing under /etc is edited.
#
# Environment: PYTHON (host interpreter with pip, default python3), SONGBIRD_IMAGE_NAME (default
# localhost/songbird), SONGBIRD_IMAGE_BUILD_DIR (default build/image).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
IMAGE_NAME=${SONGBIRD_IMAGE_NAME:-localhost/songbird}
WORK=${SONGBIRD_IMAGE_BUILD_DIR:-$REPO/build/image}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$REPO/scripts/containers/containers.conf}
export CONTAINERS_STORAGE_CONF=${CONTAINERS_STORAGE_CONF:-$REPO/scripts/containers/storage.conf}

# The Debian root: Essential packages plus Python (no apt, no perl; merged /usr done by mmdebstrap's hook
# instead of the usrmerge package, which would pull perl in), without documentation, manuals or locales.
SUITE=bookworm
VARIANT=essential
PACKAGES=python3,python3-venv
DPKG_OPTS=(
  'path-exclude=/usr/share/doc/*'
  'path-include=/usr/share/doc/*/copyright'
  'path-exclude=/usr/share/man/*'
  'path-exclude=/usr/share/info/*'
  'path-exclude=/usr/share/locale/*'
  'path-exclude=/usr/share/lintian/*'
)
HOOK_DIR=/usr/share/mmdebstrap/hooks/merged-usr

started=$SECONDS
say() { printf 'build-image [%3ds] %s\n' "$((SECONDS - started))" "$*"; }
die() { printf 'build-image: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap's root mode and 'buildah mount'): run it with sudo"

install_tools() {
  local missing=() tool
  for tool in mmdebstrap buildah podman skopeo runc; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ -d "$HOOK_DIR" ] || missing+=(mmdebstrap)
  [ ${#missing[@]} -eq 0 ] && return
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

read_version() {
  "$PYTHON" - "$REPO/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as fh:
    print(tomllib.load(fh)["project"]["version"])
EOF
}

# Prints the path of the cached root tarball, building it first when the recipe changed.
debian_root() {
  local recipe key tarball opts=() opt
  for opt in "${DPKG_OPTS[@]}"; do opts+=("--dpkgopt=$opt"); done
  recipe="$SUITE $VARIANT $PACKAGES ${DPKG_OPTS[*]} $HOOK_DIR $(uname -m)"
  key=$(printf '%s' "$recipe" | sha256sum | cut -c1-16)
  tarball="$WORK/rootfs-$SUITE-$key.tar"
  if [ ! -s "$tarball" ]; then
    say "making the Debian $SUITE root with mmdebstrap (cached as $(basename "$tarball"))" >&2
    rm -f "$WORK"/rootfs-*.tar "$WORK"/rootfs-*.tar.part
    mmdebstrap --quiet --mode=root --variant="$VARIANT" --hook-dir="$HOOK_DIR" --include="$PACKAGES" \
      "${opts[@]}" --format=tar "$SUITE" "$tarball.part" </dev/null
    mv "$tarball.part" "$tarball"
  fi
  printf '%s\n' "$tarball"
}

# The songbird wheel, built from this checkout, and every runtime dependency as a CPython 3.11 wheel for the
# root's glibc (bookworm: 2.36), so the install inside the root needs no network and compiles nothing.
fetch_wheels() {
  local dest=$1 arch platforms=() v
  arch=$(uname -m)
  for v in $(seq 17 36); do platforms+=(--platform "manylinux_2_${v}_${arch}"); done
  platforms+=(--platform "manylinux2014_${arch}")
  rm -rf "$dest" && mkdir -p "$dest"
  "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$dest" "$REPO"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --dest "$dest" --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none "${platforms[@]}" \
    "$dest"/songbird-*.whl
}

main() {
  install_tools
  local version rootfs ctr mnt old_id
  version=$(read_version)
  mkdir -p "$WORK"
  rootfs=$(debian_root)
  say "fetching wheels for songbird $version"
  fetch_wheels "$WORK/wheels"

  say "installing into /opt/songbird"
  ctr=$(buildah from --quiet scratch)
  trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
  mnt=$(buildah mount "$ctr")
  tar -C "$mnt" -xf "$rootfs"
  mkdir -p "$mnt/tmp/wheels"
  cp "$WORK"/wheels/*.whl "$mnt/tmp/wheels/"
  # The image's own user, so tools that look the uid up (getpass, expanduser) find a name and a home.
  echo 'songbird:x:65532:65532:songbird:/nonexistent:/usr/sbin/nologin' >>"$mnt/etc/passwd"
  echo 'songbird:x:65532:' >>"$mnt/etc/group"
  buildah run --isolation chroot "$ctr" -- /bin/sh -eu -c "
    python3 -m venv /opt/songbird
    /opt/songbird/bin/pip install --quiet --no-index --find-links /tmp/wheels --no-cache-dir --no-compile \
      --disable-pip-version-check 'songbird==$version'
    /opt/songbird/bin/pip uninstall --quiet --yes --disable-pip-version-check pip setuptools
    # kubernetes.aio, the client's asyncio twin, is half of the installed size and nothing imports it.
    rm -rf /opt/songbird/lib/python3.11/site-packages/kubernetes/aio
    python3 -m compileall -q -j 0 /opt/songbird/lib
    rm -rf /tmp/wheels /root/.cache /var/cache/debconf/*-old /var/log/*
    test \"\$(/opt/songbird/bin/songbird --version)\" = 'songbird $version'
  "
  buildah umount "$ctr" >/dev/null

  buildah config \
    --entrypoint '["songbird"]' --cmd run \
    --user 65532:65532 --workingdir / --port 8080 \
    --env PATH=/opt/songbird/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env PYTHONDONTWRITEBYTECODE=1 --env PYTHONUNBUFFERED=1 \
    --label org.opencontainers.image.title=songbird \
    --label org.opencontainers.image.version="$version" \
    --annotation org.opencontainers.image.version="$version" \
    --label org.opencontainers.image.description="Songbird progressive-delivery controller" \
    "$ctr"
  old_id=$(buildah images --quiet --no-trunc "$IMAGE_NAME:$version" 2>/dev/null || true)
  buildah commit --quiet --format oci --rm "$ctr" "$IMAGE_NAME:$version" >/dev/null
  trap - EXIT
  # The image this build replaced, if nothing else uses it (never a blanket prune: the store is shared).
  if [ -n "$old_id" ] && [ "$old_id" != "$(buildah images --quiet --no-trunc "$IMAGE_NAME:$version")" ]; then
    buildah rmi "$old_id" >/dev/null 2>&1 || true
  fi
  say "built $IMAGE_NAME:$version ($(podman image inspect --format '{{.Size}}' "$IMAGE_NAME:$version") bytes)"
}

main "$@"
