"""Simulated devices for AWS IoT fleet provisioning by claim, over MQTT 3.1.1 or 5: one device, or a fleet
with a load report."""
