"""Local emulator of the AWS IoT fleet-provisioning endpoint, built from the synthesized stack."""
