#!/usr/bin/env bash
# coatcheck's benchmark in one command, from any directory:
#
#   bash benchmarks/run.sh --quick                        # smoke run, about 20 minutes
#   bash benchmarks/run.sh --rounds 3 --duration 10       # the real run (quiet machine, about 70 minutes)
#   bash benchmarks/run.sh --rounds 3 --duration 10 --publish   # ... and refresh docs/performance.md
#
# Builds its own virtualenv (benchmarks/.venv: coatcheck from this checkout plus the peers in
# requirements.txt), installs wrk and valgrind with apt if they are missing, starts the database
# servers if they are down (scripts/services.sh), then runs benchmarks/run.py with the arguments given here.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
venv="$here/.venv"

missing=""
for tool in wrk valgrind; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  echo "benchmark: installing$missing" >&2
  # shellcheck disable=SC2086  # one word per package
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "benchmark: creating $venv" >&2
  python3 -m venv "$venv"
fi
stamp="$venv/.installed"
if [ ! -f "$stamp" ] || [ "$here/requirements.txt" -nt "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  echo "benchmark: installing coatcheck and the peers into $venv" >&2
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e "$root[redis,postgres,mysql,fast]" -r "$here/requirements.txt"
  touch "$stamp"
fi
bash "$root/scripts/services.sh" >&2
cd "$root"
exec "$venv/bin/python" -m benchmarks.run "$@"
