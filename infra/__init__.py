"""The CDK app: the cloud side of AWS IoT fleet provisioning by claim."""
