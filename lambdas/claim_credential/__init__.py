"""Custom resource behind `generated` claim credentials (CDK provider framework `on_event`)."""
