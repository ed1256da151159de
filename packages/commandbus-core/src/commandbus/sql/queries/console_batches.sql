-- console_batches: a page of batches of every domain (or one), newest first, after a
-- keyset cursor (created_at, batch_id); counters from view batch_summary (counted for
-- the page's batches only).
SELECT batch_id, domain, name, custom_data, total, pending, in_progress, completed, failed,
       canceled, in_troubleshooting, status, created_at, completed_at, claimed
FROM {schema}.batch_summary
WHERE batch_id IN (
    SELECT b.batch_id FROM {schema}.batches b
    WHERE (%(domain)s::text IS NULL OR b.domain = %(domain)s)
      AND (%(cursor_at)s::timestamptz IS NULL
           OR (b.created_at, b.batch_id) < (%(cursor_at)s, %(cursor_id)s::uuid))
    ORDER BY b.created_at DESC, b.batch_id DESC
    LIMIT %(limit)s
)
ORDER BY created_at DESC, batch_id DESC
