"""Exception cases on Kafka: the case stage (`posrecon cases`), its changelog and its ops API."""
