"""`python -m device_sim locust`: the fleet flow as a Locust User. Only the locustfile imports Locust."""
