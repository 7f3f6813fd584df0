"""The OCI image store: blobs, manifests, configs, layer unpacking."""
