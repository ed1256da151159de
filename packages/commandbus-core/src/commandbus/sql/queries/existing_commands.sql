-- existing_commands: which of these (domain, command_id) keys are taken already.
SELECT c.domain, c.command_id
FROM {schema}.commands c
JOIN jsonb_to_recordset(%(commands)s::jsonb) AS k(domain text, command_id uuid)
  ON c.domain = k.domain AND c.command_id = k.command_id
