"""Simulated devices for AWS IoT fleet provisioning by claim: one device, or a fleet with a load report."""
