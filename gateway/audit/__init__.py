"""The audit trail: DICOM audit messages (PS3.15 A.5) to an append-only file and a syslog collector."""

from gateway.audit.sinks import AuditFile, AuditSink, SyslogSender, SyslogTarget
from gateway.audit.trail import AuditTrail

__all__ = ["AuditFile", "AuditSink", "AuditTrail", "SyslogSender", "SyslogTarget"]
