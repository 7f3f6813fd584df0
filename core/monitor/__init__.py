"""The process that owns a container's stdio and waits for it: the ``pinnace`` command
itself in the foreground (``foreground``), a forked monitor for detached containers
(``detached``), and what attaches to either (``attach``) or runs a process beside them
(``execution``). They call the engine; the engine never calls them."""
