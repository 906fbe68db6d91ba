"""Pulling studies from a source PACS: query (C-FIND, QIDO-RS), then retrieve (C-MOVE, C-GET, WADO-RS)."""

from gateway.pull.ledger import PullLedger
from gateway.pull.puller import Puller, open_source
from gateway.pull.query import PullQuery
from gateway.pull.source import PullSource, SourceError

__all__ = ["PullLedger", "PullQuery", "PullSource", "Puller", "SourceError", "open_source"]
