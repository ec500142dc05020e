"""The README's demo (demo.py, run as a script) and its BMC hook (demo_bmc.py, run by ipmi_sim)."""
