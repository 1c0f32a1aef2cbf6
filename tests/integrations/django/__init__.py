"""coatcheck's Django engine through Django's own test clients, servers and session test suite."""
