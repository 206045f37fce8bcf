"""Shared pytest fixtures."""

pytest_plugins = ["fleet_fixtures"]
