"""The worker's parts, each with one job; :class:`commandbus.Worker` wires them.

```
Worker          start / stop(timeout) / drain(); runs one leased command
  Pacer         when to lease and how much: ahead of free Slots, up to two dequeues
  Fetcher       leases commands: the dequeue statement, concurrency limits, pause
  LeaseBook     crash isolation: what is in flight until when, rescue one alone
  executors     AsyncExecutor / ThreadExecutor: run one handler, return its Outcome
  Completer     records outcomes in batches, extends leases, counts and tells hooks
  CancelWatcher operators' cancel requests -> the running handlers (Running)
```
The parts talk through small values (:class:`~commandbus._outcomes.Lease`,
:class:`~commandbus._outcomes.Outcome`), never through the Worker's fields.
"""
