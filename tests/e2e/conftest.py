"""The browser E2E runs against the same kind of real broker as the integration tests (their fixtures)."""

from integration.conftest import bootstrap, broker, fresh_topics, pytest_collection_modifyitems  # noqa: F401
