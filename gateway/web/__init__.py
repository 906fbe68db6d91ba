"""The operations server of ``gazex serve``: REST API (/api/v1), web console, probes and metrics."""

from gateway.web.app import PUBLIC_PATHS, create_app, route_roles
from gateway.web.context import ApiContext
from gateway.web.server import HttpServer, HttpServerError

__all__ = ["PUBLIC_PATHS", "ApiContext", "HttpServer", "HttpServerError", "create_app", "route_roles"]
