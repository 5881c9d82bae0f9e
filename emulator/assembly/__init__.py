"""The cloud-assembly reader: the synthesized CDK stack as the resources the emulator serves."""
