"""Alembic migration environment for the gateway's index (shipped as package data)."""
