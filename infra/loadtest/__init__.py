"""The opt-in load-test stack: a Locust master and N workers on ECS Fargate, apart from the backend."""
