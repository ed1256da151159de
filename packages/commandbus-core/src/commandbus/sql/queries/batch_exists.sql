-- batch_exists: whether a batch exists in a domain.
SELECT 1 FROM {schema}.batches WHERE batch_id = %(batch_id)s AND domain = %(domain)s
