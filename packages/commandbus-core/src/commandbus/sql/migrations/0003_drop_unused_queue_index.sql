-- queue_command_idx served no query (every queue access is by msg_id or by the dequeue
-- index) yet cost an index insert per send and a dead entry per finished message.
DROP INDEX IF EXISTS {schema}.queue_command_idx;
