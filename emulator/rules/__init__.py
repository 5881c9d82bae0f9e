"""What reacts to AWS IoT beside the broker: the stack's topic rules (on the lifecycle events) and its
EventBridge schedules, both invoking the stack's Lambda functions where the hook runs."""
