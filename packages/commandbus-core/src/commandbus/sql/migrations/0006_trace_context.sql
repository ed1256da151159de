-- commandbus schema, version 6: trace context travels with commands and replies.
-- {schema} is the schema name.
--
-- When tracing is on (commandbus.otel), a send stores the W3C trace context of its span
-- (a JSON object of propagation headers: traceparent, tracestate) with each command, the
-- worker continues that trace in the handler's span, and the command's reply carries the
-- same context to the reply router, so one trace follows a whole saga across processes.
-- NULL when tracing is off: nothing is stored, and adding a nullable column without a
-- default rewrites no table.
ALTER TABLE {schema}.commands ADD COLUMN trace_context jsonb;
ALTER TABLE {schema}.replies ADD COLUMN trace_context jsonb;
ALTER TABLE {schema}.parked_replies ADD COLUMN trace_context jsonb;
