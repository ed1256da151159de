"""Tests of the async core, against a real PostgreSQL."""
