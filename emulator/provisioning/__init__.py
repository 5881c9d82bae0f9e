"""The fleet-provisioning service (tokens, certificates, the hook, template evaluation); it knows no MQTT."""
