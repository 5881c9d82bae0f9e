"""The registry: moto's IoT and DynamoDB backends, indexed so that no lookup scans the fleet."""
