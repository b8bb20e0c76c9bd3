"""Built-in plugins of srcompress, each registered through the ``srcompress.plugins`` entry-point group."""
