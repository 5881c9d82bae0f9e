"""The AWS API front end: moto's IoT and DynamoDB at `aws_endpoint_url`, plus what moto lacks."""
