-- parked_reply_discard: an operator drops a parked reply for good; the command it answered
-- gets an OPERATOR_REPLY_DISCARD audit event with the operator, the reason and what the
-- reply said (its outcome and error code), in this statement.
WITH gone AS (
    DELETE FROM {schema}.parked_replies
    WHERE parked_id = %(parked_id)s
    RETURNING parked_id, queue, domain, command_id, outcome, error_code, reason_code
), aud AS (
    INSERT INTO {schema}.audit (domain, command_id, event_type, details)
    SELECT domain, command_id, 'OPERATOR_REPLY_DISCARD',
           jsonb_build_object('operator', %(operator)s::text, 'reason', %(reason)s::text,
                              'parked_id', parked_id, 'queue', queue,
                              'parked_reason', reason_code, 'outcome', outcome,
                              'error_code', error_code)
    FROM gone
)
SELECT parked_id FROM gone
