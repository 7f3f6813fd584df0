"""``pinnace-runtime``: an OCI runtime with runc's command line over an isolation plugin.

containerd, podman and dockerd call it as they call runc. Each container has a state
directory ``<root>/<id>``, which is also the isolation plugin's bundle directory:
``state.json`` (:class:`~pinnace.ociruntime.containers.Record`) plus the plugin's
own files. Commands import only what they use: the runtime starts for every call.
"""
