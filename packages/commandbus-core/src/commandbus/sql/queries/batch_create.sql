-- batch_create: the batch row; its commands follow through send.sql in the same transaction.
INSERT INTO {schema}.batches (batch_id, domain, name, custom_data, total)
VALUES (%(batch_id)s, %(domain)s, %(name)s, %(custom_data)s::jsonb, %(total)s)
