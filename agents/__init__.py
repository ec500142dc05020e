"""pyha's resource agents: each ``<name>.py`` module declares one agent; the
executable ``agents/<Type>`` next to it is what Pacemaker runs."""
