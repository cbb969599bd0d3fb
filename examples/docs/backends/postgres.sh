#!/usr/bin/env bash
# Creating and upgrading the PostgreSQL schema by hand.

# --8<-- [start:print]
python -m conveyor.backends.postgres --schema jobs > conveyor-jobs.sql
# --8<-- [end:print]

# --8<-- [start:apply]
psql "postgresql://admin@db.internal/shop" -v ON_ERROR_STOP=1 -f conveyor-jobs.sql
# --8<-- [end:apply]

# --8<-- [start:upgrade]
psql "postgresql://admin@db.internal/shop" -tAc "SELECT max(version) FROM jobs.schema_version"
python -m conveyor.backends.postgres --schema jobs --from-version 1 > upgrade.sql
# --8<-- [end:upgrade]
