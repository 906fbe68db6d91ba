"""From a received study to results in the archive: completion, routing, jobs, worker, delivery, retention.

Decisions are pure functions with unit tests (:mod:`routing`, :mod:`completion`,
:mod:`backoff`, :mod:`states`, :mod:`keys`); the modules around them do the I/O
(:mod:`completer`, :mod:`queue`, :mod:`worker`, :mod:`outbox`, :mod:`sender`,
:mod:`delivery`, :mod:`retention`) and :mod:`service` runs them in one process.
"""
