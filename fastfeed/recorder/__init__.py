"""The recorder's I/O layer: connection, snapshotter, signals and the process that ties them."""
