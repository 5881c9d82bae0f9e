"""The MQTT front end (asyncio + TLS, MQTT 3.1.1 and 5): codecs, broker, sessions, AWS IoT authorisation,
provisioning topics."""
