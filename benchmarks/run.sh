#!/usr/bin/env bash
# Conveyor against SAQ, ARQ, streaQ, taskiq, pgqueuer and procrastinate.
#
#   bash benchmarks/run.sh            # full run (3 runs, N=10,000), writes README.md
#   bash benchmarks/run.sh --quick    # 1 run, N=2,000, a couple of minutes
#   bash benchmarks/run.sh --help     # every option
#
# Builds benchmarks/.venv (once, and again when requirements.txt changes) with the pinned
# competitors and Conveyor installed from this checkout, then runs run.py with it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv="$here/.venv"
python="${PYTHON:-python3}"
stamp="$venv/.requirements.sha"
want="$(cat "$here/requirements.txt" "$repo/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "setting up $venv ..." >&2
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" \
        -e "$repo[redis,hiredis,postgres]"
    echo "$want" > "$stamp"
fi
exec "$venv/bin/python" "$here/run.py" "$@"
