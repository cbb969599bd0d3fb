#!/usr/bin/env bash
# Moving a SAQ application to Conveyor: its commands.

# --8<-- [start:install]
pip uninstall -y saq && pip install "conveyor[redis]"   # or [postgres]; SQLite needs no extra
# --8<-- [end:install]

# --8<-- [start:sed]
# Rewrite `from saq...` and `import saq...` lines in place; review the diff before committing.
grep -rlE '^(from|import) saq\b' --include='*.py' . | xargs sed -i -E 's/^(from|import) saq\b/\1 conveyor/'
# --8<-- [end:sed]

# --8<-- [start:run]
conveyor app.worker.settings --workers 4 -v     # was: saq app.worker.settings --workers 4 -v
conveyor app.worker.settings --web --port 8080   # was: saq app.worker.settings --web --port 8080
conveyor app.worker.settings --check             # was: saq app.worker.settings --check
# --8<-- [end:run]
