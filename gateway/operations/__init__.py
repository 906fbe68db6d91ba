"""What operators read and do, for the HTTP API and the console alike (no web framework here).

:mod:`gateway.operations.queries` reads studies, jobs, deliveries and the dashboard's counts
(with filters and paging); :mod:`gateway.operations.actions` echoes destinations, retries
deliveries, reprocesses studies, cancels jobs and tests the routing rules.  A refused request
raises :class:`OperationError` whose ``kind`` is ``not_found``, ``conflict`` or ``invalid``.
"""

from gateway.operations.errors import OperationError

__all__ = ["OperationError"]
