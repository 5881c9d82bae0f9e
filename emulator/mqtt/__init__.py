"""The MQTT front end (asyncio + TLS): codec, broker, AWS IoT authorisation, provisioning topics."""
