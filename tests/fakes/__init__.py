"""In-process fakes of external services, served over real loopback HTTP for tests."""
