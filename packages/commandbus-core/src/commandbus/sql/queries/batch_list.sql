-- batch_list: a domain's batches, newest first, optionally of one derived status.
SELECT batch_id, domain, name, custom_data, total, pending, in_progress, completed, failed,
       canceled, in_troubleshooting, status, created_at, completed_at, claimed
FROM {schema}.batch_summary
WHERE domain = %(domain)s
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY created_at DESC, batch_id
LIMIT %(limit)s OFFSET %(offset)s
