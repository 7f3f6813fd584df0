"""Test suites that plugin authors run against their own plugins (``pinnace.testing``)."""
