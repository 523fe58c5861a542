"""The routes: one Controller per resource, one module each. Handlers read (api/db.py), convert
(api/convert.py) and answer; the HTTP plumbing they share is api/plumbing.py."""

from api.routes.agents import AgentController
from api.routes.benchmarks import BenchmarkController
from api.routes.health import HealthController
from api.routes.ingest import IngestController
from api.routes.runs import RunViewController
from api.routes.sessions import SessionController
from api.routes.stream import StreamController

CONTROLLERS = [HealthController, BenchmarkController, AgentController, RunViewController, SessionController,
               IngestController, StreamController]
