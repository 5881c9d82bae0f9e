"""A thin MQTT 3.1.1 front end (asyncio + TLS): broker, AWS IoT authorisation, provisioning topics."""
