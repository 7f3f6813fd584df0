"""Containers as the state records them: typed records and all of their SQL."""
