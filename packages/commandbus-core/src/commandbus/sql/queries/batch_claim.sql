-- batch_claim: stamp terminal batches' completion time; a row returned means this caller
-- claimed the batch (and runs its on_complete callback). Claims succeed once per batch.
UPDATE {schema}.batches b
SET completed_at = coalesce(t.completed_at, now())  -- never NULL: it marks the claim
FROM unnest(%(batch_ids)s::uuid[], %(completed_at)s::timestamptz[]) AS t(batch_id, completed_at)
WHERE b.batch_id = t.batch_id AND b.completed_at IS NULL
RETURNING b.batch_id
