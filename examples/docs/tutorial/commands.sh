#!/usr/bin/env bash
# The shell commands of the tutorial, run from the directory that holds tasks.py and worker.py.
# tests/test_docs.py checks each `conveyor` line against the real command-line parser.

# --8<-- [start:install]
python3.11 -m venv .venv && source .venv/bin/activate
pip install conveyor
# --8<-- [end:install]

# --8<-- [start:extras]
pip install "conveyor[web]"        # the console (Starlette, Jinja2, uvicorn)
pip install "conveyor[redis]"      # the Redis backend ("conveyor[hiredis]": faster parser)
pip install "conveyor[postgres]"   # the PostgreSQL backend (psycopg 3)
pip install "conveyor[prometheus,otel]"  # metrics and tracing
# --8<-- [end:extras]

# --8<-- [start:first-job]
python first_job.py
# --8<-- [end:first-job]

# --8<-- [start:worker]
conveyor worker.settings -v
# --8<-- [end:worker]

# --8<-- [start:produce]
python produce.py
# --8<-- [end:produce]

# --8<-- [start:worker-options]
conveyor worker.settings --burst      # run until the queue is empty, then exit
conveyor worker.settings --check      # exit 0 if a worker of the queue is alive, else 1
conveyor worker.settings -vv          # log at DEBUG
# --8<-- [end:worker-options]

# --8<-- [start:workers]
conveyor worker.settings --workers 4
# --8<-- [end:workers]

# --8<-- [start:console]
conveyor worker.settings --web                    # a worker, and the console on :8080
conveyor web worker.settings --port 8081          # the console alone, no worker
# --8<-- [end:console]

# --8<-- [start:history]
conveyor info worker.settings
conveyor runs worker.settings --function send_welcome --limit 10
conveyor runs worker.settings --status failed --json
conveyor logs worker.settings 1 --follow
# --8<-- [end:history]

# --8<-- [start:actions]
conveyor enqueue worker.settings export_orders --args '{"month": "2025-02"}'
conveyor retry worker.settings 6a3c1e0e-e7ba-11f1-b389-02fc00000001
conveyor abort worker.settings 6a3c1e0e-e7ba-11f1-b389-02fc00000001 --reason "wrong month"
# --8<-- [end:actions]
