"""The Windows side of the agent: Event Log, registry run keys, inventory, firewall, service.

Every module imports on any platform; the Windows calls (pywin32, `winreg`) sit behind
small interfaces and are imported only when a Windows implementation is built, so the
logic above them is tested on Linux with recorded events and fakes.
"""
