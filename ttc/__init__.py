"""The ``ttc`` command line; it uses the gateway as any client of its packages would."""
