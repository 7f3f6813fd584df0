"""``pinnace build``: Dockerfiles to images, one container per ``RUN``, with a layer cache."""
