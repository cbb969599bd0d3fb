#!/usr/bin/env bash
# Running the framework examples, from the repository's root.

# --8<-- [start:install]
pip install "conveyor[web]" fastapi uvicorn        # FastAPI
pip install "conveyor[web]" uvicorn                # Starlette (the console needs it anyway)
pip install "conveyor[web,postgres]" "litestar>=2.25" uvicorn   # Litestar on PostgreSQL
# --8<-- [end:install]

# --8<-- [start:fastapi]
uvicorn --factory examples.fastapi_sqlite.app:create_app
# --8<-- [end:fastapi]

# --8<-- [start:fastapi-production]
RUN_WORKER=0 uvicorn --factory examples.fastapi_sqlite.app:create_app --workers 4
conveyor examples.fastapi_sqlite.app.worker_settings --workers 2
# --8<-- [end:fastapi-production]

# --8<-- [start:starlette]
uvicorn --factory examples.starlette_redis.app:create_app
# --8<-- [end:starlette]

# --8<-- [start:starlette-production]
RUN_WORKER=0 uvicorn --factory examples.starlette_redis.app:create_app --workers 4
conveyor examples.starlette_redis.app.worker_settings --workers 2
# --8<-- [end:starlette-production]

# --8<-- [start:litestar]
uvicorn --factory examples.litestar_postgres.app:create_app
# --8<-- [end:litestar]

# --8<-- [start:litestar-production]
RUN_WORKER=0 uvicorn --factory examples.litestar_postgres.app:create_app --workers 4
conveyor examples.litestar_postgres.app.worker_settings --workers 2
# --8<-- [end:litestar-production]
