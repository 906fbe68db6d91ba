"""The web console: server-rendered pages for IT and operators (Jinja2 templates, plain forms)."""

from gateway.web.console.routes import router

__all__ = ["router"]
