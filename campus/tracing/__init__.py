"""Contact tracing from the access records, incidents, and the records' retention."""
