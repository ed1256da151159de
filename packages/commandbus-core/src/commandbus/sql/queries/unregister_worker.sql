-- unregister_worker: a worker or router stopped cleanly and leaves the registry.
DELETE FROM {schema}.workers WHERE id = %(id)s
