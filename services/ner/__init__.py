"""NER and entity linking: alt-text -> mentions -> knowledge-base entities with calibrated scores."""
