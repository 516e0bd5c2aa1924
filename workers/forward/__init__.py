"""The webhook forwarder (``callhub forward``): call events pushed to users' backends.

Rooms, top down: ``forwarder`` (the process: subscriptions, leases, one
``ShardDelivery`` per (subscription, shard) it holds), ``shard_delivery``
(reading one shard's log for one subscription, in order per call),
``destination`` (what a subscription's deliveries share in this process),
``sender`` (the HTTP POSTs), ``retry_policy``, ``lease`` (the lease and the
cursor it guards), ``journal`` (attempts, dead letters, disabling),
``subscriptions`` (reading the hash), ``positions``, ``metrics``.
"""
