-- existing_commands: which of these (domain, command_id) keys are taken already.
SELECT c.domain, c.command_id
FROM {schema}.commands c
JOIN unnest(%(domain)b::text[], %(command_id)b::uuid[]) AS k(domain, command_id)
  ON c.domain = k.domain AND c.command_id = k.command_id
