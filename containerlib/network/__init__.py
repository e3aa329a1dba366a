"""Container networking: address management, links, published ports (services layer).

See ``docs/design.md`` (Networking): ``none`` (a network namespace with loopback only) is
the default; the modules here build bridges, veth pairs, address leases and published
ports on top of :mod:`containerlib.linux`.
"""
