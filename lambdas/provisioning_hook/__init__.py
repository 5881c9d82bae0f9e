"""The pre-provisioning hook: decides which serial numbers may become devices (deny by default)."""
