#!/usr/bin/env bash
# Installs a single-node Slurm's programs, Debian's slurm-wlm and munge (apt-get, non-interactive, as
# root), for the tests marked `slurm`: tests/slurm_cluster.py starts a Slurm of its own from a
# temporary folder (its own munge key and socket, slurm.conf and ports) and stops it, so nothing is
# configured or started here. CI (.ci/run) runs this before scripts/test.sh, with SUITE_SLURM=1;
# elsewhere the tests marked `slurm` are deselected unless SUITE_SLURM is set, and scripts/test.sh
# installs no system package. Packages already installed are kept.
set -euo pipefail
packages=(slurm-wlm munge)
if [ "$(dpkg-query -W -f='${db:Status-Status} ' "${packages[@]}" 2>/dev/null)" = "installed installed " ]; then
  echo "install_slurm: ${packages[*]} are installed (nothing to do)" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install_slurm: apt-get needs root: sudo bash scripts/install_slurm.sh" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
echo "install_slurm: $(slurmd -V), $(munged -V)" >&2
