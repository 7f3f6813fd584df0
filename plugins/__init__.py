"""Built-in pinnace plugins, registered through the same entry points as third-party ones."""
