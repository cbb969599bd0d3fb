"""SAQ's HTTP queue after ``s/saq/conveyor/``: the proxy in the application, the queue outside."""

# --8<-- [start:saq]
from conveyor import Queue
from conveyor.queue.http import HttpProxy, HttpQueue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# In the web application (SAQ's form: the application's handler calls process()).
proxy = HttpProxy(Queue.from_url("sqlite:///jobs.db"))


async def queue_endpoint(request: Request) -> Response:
    # Authenticate the request here, as the application does for its other routes.
    return Response(await proxy.process(await request.body()), media_type="application/json")


app = Starlette(routes=[Route("/queue", queue_endpoint, methods=["POST"])])

# In a producer or worker that cannot reach the store:
queue = HttpQueue.from_url("http://localhost:8000/queue")
# --8<-- [end:saq]
