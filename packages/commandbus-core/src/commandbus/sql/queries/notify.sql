-- notify: wake the listeners of one channel (sent when the transaction commits).
SELECT pg_notify(%(channel)s, '')
