"""The container spec, lifecycle and process bookkeeping."""
