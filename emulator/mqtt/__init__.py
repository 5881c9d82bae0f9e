"""A thin MQTT 3.1.1 front end (asyncio + TLS): the broker, AWS IoT's authorisation, the provisioning topics."""
