"""pyha's fence agents: each ``<name>.py`` module declares one agent; the
executable ``fence/fence_<name>`` next to it is what the fencers run."""
