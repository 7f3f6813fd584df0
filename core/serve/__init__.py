"""``pinnace serve``: the Docker Engine API (1.24 to 1.41) on a unix socket.

The server is one more front-end over a root, like the CLI: every request
works through a :class:`pinnace.client.Client` of its connection's thread,
containers run under monitors of their own, and stopping the server leaves
them running. A thread per connection, so a pull, a ``logs -f`` or an attach
never holds up the others.

- :mod:`pinnace.serve.http`: the listeners, request parsing, replies, streams, hijacking
- :mod:`pinnace.serve.routes`: the endpoint table; the endpoints by kind in
  ``system``, ``containers``, ``execs``, ``images``, ``objects`` (networks, volumes)
- :mod:`pinnace.serve.shapes`: docker's JSON shapes to and from pinnace's records
"""

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
