-- schema_versions: the migrations applied to the schema (fails if it has no version table).
SELECT version FROM {schema}.schema_version ORDER BY version
