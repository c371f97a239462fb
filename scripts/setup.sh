#!/usr/bin/env bash
# One-command setup: system packages, the virtualenv, the collections path.
# Idempotent: every step checks first and does nothing when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# Debian package names; bindep.txt lists the same for RPM systems.
debs=(libguestfs-tools python3-guestfs linux-image-amd64 qemu-system-x86 qemu-utils
      nbdkit libnbd-bin python3-libnbd libvirt-daemon-system libvirt-clients python3-libvirt
      libhivex-bin python3-hivex openssh-server openssh-client openssl virt-v2v debootstrap python3-venv
      xz-utils gzip ovmf git rsync shellcheck libxml2-utils)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=(); [[ $(id -u) == 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# libguestfs builds its appliance from the host kernel, which must be readable.
for k in /boot/vmlinuz-*; do
  [[ -r $k ]] || { echo "setup: $k is not readable; libguestfs needs it (chmod 0644 $k)" >&2; exit 1; }
done

# The virtualenv sees Debian's guestfs/libvirt/nbd/hivex bindings.
stamp=.venv/.kvmigrate-requirements
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "setup: installing Python tools into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

# Make the checkout importable as ansible_collections.kvmigrate.v2v.
mkdir -p .collections/ansible_collections/kvmigrate
ln -sfn ../../.. .collections/ansible_collections/kvmigrate/v2v

# ansible-test's sanity virtualenvs fetch a pip bootstrap script from a host
# that may be unreachable; a local stand-in installs the pip wheel instead.
getpip=$HOME/.ansible/test/cache/get_pip_24_2.py
if [[ ! -f $getpip ]]; then
  mkdir -p "$(dirname "$getpip")" .build/pip
  ls .build/pip/pip-24.2-*.whl >/dev/null 2>&1 || \
    .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps pip==24.2 -d .build/pip
  wheel=$(ls "$root"/.build/pip/pip-24.2-*.whl)
  mkdir -p "$HOME/.cache/kvmigrate"
  cp "$wheel" "$HOME/.cache/kvmigrate/"
  cat > "$getpip" <<PYEOF
# Stand-in for get-pip.py written by kvmigrate's setup: installs pip 24.2 from a local wheel.
import sys
sys.path.insert(0, "$HOME/.cache/kvmigrate/$(basename "$wheel")")
from pip._internal.cli.main import main
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "$HOME/.cache/kvmigrate/$(basename "$wheel")"] + args))
PYEOF
fi
# Test-only: KubeVirt's API types and the TypeScript compiler for tests/kubevirt_schema.py, pinned by
# tests/kubevirt_schema/package-lock.json and installed outside the source tree (.build is ignored).
if ! command -v npm >/dev/null; then
  echo "setup: installing Node.js and npm"
  sudo=(); [[ $(id -u) == 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends nodejs npm
fi
kvschema=.build/kubevirt-schema
kvschema_want=$(cat tests/kubevirt_schema/package.json tests/kubevirt_schema/package-lock.json | sha256sum | cut -d' ' -f1)
if [[ ! -f $kvschema/.kvmigrate-lock || $(cat "$kvschema/.kvmigrate-lock") != "$kvschema_want" ]]; then
  echo "setup: installing the KubeVirt API types into $kvschema"
  rm -rf "$kvschema" && mkdir -p "$kvschema"
  cp tests/kubevirt_schema/package.json tests/kubevirt_schema/package-lock.json "$kvschema/"
  (cd "$kvschema" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  echo "$kvschema_want" > "$kvschema/.kvmigrate-lock"
fi
echo "setup: ready (.venv, .collections)"
