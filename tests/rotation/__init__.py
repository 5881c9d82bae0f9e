"""End-to-end tests of certificate rotation (issue 15): the stack's rotation template, hook and retirer,
run by the emulator (lifecycle events, topic rule, schedules), driven by `device_sim` and `fleetctl`."""
