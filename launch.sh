#!/usr/bin/env bash
# Starts `python -m aejax.main` with the given flags. Run ./launch.sh --help for the routes.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: ./launch.sh [main flags]

  ./launch.sh --config=experiments/vae.py --workdir=/tmp/vae --manual_dir=../shared/data/mnist
      one process using every local device.

Every flag is handed to `python -m aejax.main` unchanged.
USAGE
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
esac
exec "${PYTHON:-python}" -m aejax.main "$@"
