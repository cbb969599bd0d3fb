#!/usr/bin/env bash
# Serving the console from the command line.

# --8<-- [start:local]
conveyor worker.settings --web                 # next to a worker, on http://127.0.0.1:8080
conveyor web worker.settings                   # alone (the way with --workers N)
conveyor web worker.settings -e reports.settings -e emails.settings   # several queues
# --8<-- [end:local]

# --8<-- [start:env]
export CONVEYOR_AUTH_USER=ops CONVEYOR_AUTH_PASSWORD='a long passphrase'      # role admin
export CONVEYOR_AUTH_READ_USER=support CONVEYOR_AUTH_READ_PASSWORD='another'  # role read
export CONVEYOR_AUTH_TOKEN='token for deploy scripts'                         # role admin
export CONVEYOR_AUTH_READ_TOKEN='token for monitoring'                        # role read
export CONVEYOR_SECRET_KEY='random, shared by every replica of the console'
conveyor web worker.settings --host 0.0.0.0 --port 8080 --title "Shop jobs"
# --8<-- [end:env]
