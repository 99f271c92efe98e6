"""The wiring: which inbound event becomes which deliveries, and how each is performed.

This is the only package that knows both platforms. It imports platforms, mappings and the
relay; none of them import it.
"""
