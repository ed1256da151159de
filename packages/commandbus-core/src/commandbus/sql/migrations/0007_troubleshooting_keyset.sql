-- commandbus schema, version 7: the troubleshooting queue, searched newest parked first.
-- {schema} is the schema name.
--
-- TroubleshootingQueue.find pages through parked commands by keyset (parked time, domain,
-- command id), newest first, across domains; the bulk actions walk the same order in
-- chunks. A parked command's updated_at is when it was parked (nothing changes the row
-- while it waits). Partial on the parked status, like commands_troubleshooting_idx: the
-- index holds only parked rows, so sends, leases and outcomes never touch it.
CREATE INDEX commands_parked_keyset_idx
    ON {schema}.commands (updated_at, domain, command_id)
    WHERE status = 'IN_TROUBLESHOOTING_QUEUE';
