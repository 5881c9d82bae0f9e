"""CloudFormation's intrinsic functions, evaluated once for the assembly reader and the template engine."""
