"""pyha's shared agent library.

Kept empty on purpose: every agent imports this package on every run, so
anything imported here is paid for by every monitor on every node.
"""

__version__ = "0.1.0"
