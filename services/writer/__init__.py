"""The I2E writer: scored records from Kafka -> WebDataset shards with manifests in the I2E bucket."""
