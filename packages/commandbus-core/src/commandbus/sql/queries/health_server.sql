-- health_server: the database answers; its PostgreSQL version, for the report.
SELECT current_setting('server_version')
