"""The index database: ORM models, engines, migrations and the instance index."""

from gateway.db.engine import DatabaseError, create_database_engine, describe, session_factory
from gateway.db.installation import installation_id
from gateway.db.migrate import SchemaStatus, require_current, schema_status, upgrade
from gateway.db.models import Base, Instance, InstanceReplacement, Patient, Series, Study

__all__ = [
    "Base",
    "DatabaseError",
    "Instance",
    "InstanceReplacement",
    "Patient",
    "SchemaStatus",
    "Series",
    "Study",
    "create_database_engine",
    "describe",
    "installation_id",
    "require_current",
    "schema_status",
    "session_factory",
    "upgrade",
]
