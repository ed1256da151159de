-- health_server: the database answers; its PostgreSQL version (without the build's
-- distribution suffix), for the report.
SELECT split_part(current_setting('server_version'), ' ', 1)
