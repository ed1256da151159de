-- batch_get: batches by id with counters counted from their commands (view batch_summary).
SELECT batch_id, domain, name, custom_data, total, pending, in_progress, completed, failed,
       canceled, in_troubleshooting, status, created_at, completed_at, claimed
FROM {schema}.batch_summary
WHERE batch_id = ANY(%(batch_ids)s::uuid[])
  AND (%(domain)s::text IS NULL OR domain = %(domain)s)
