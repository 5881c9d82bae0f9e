"""Pure emulator modules: template evaluation and IoT policy evaluation (no sockets, no moto)."""
