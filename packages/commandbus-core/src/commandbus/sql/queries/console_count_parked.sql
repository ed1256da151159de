-- console_count_parked: how many parked commands match a filter, counted up to
-- %(cap)s + 1 only (a bounded read: the caller says "more than cap" beyond). What a bulk
-- action with the same filter would act on. Commands alias "c" (the match fragment).
SELECT count(*)::int
FROM (SELECT 1 FROM {schema}.commands c WHERE {match} LIMIT %(cap)s + 1) matching
