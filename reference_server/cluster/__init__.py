"""Several reference server nodes sharing their sessions through Redis (docs/cluster.md).

A node holds in memory only the sessions attached to it; every other session is in Redis,
loaded whole when a resume reaches the node. Each module has one job:

- ``held``: a session whose frames wait until the change that produced them is stored;
- ``writer``: the node's one pipeline of commits and deletes to Redis, in order, with the
  version check that fences a node out of a session it lost;
- ``registry``: hello and resume against Redis (the resume race, §7.5), takeover across nodes;
- ``signals``: Redis pub/sub, how a node hears that its connection was taken over;
- ``sweeper``: expiry swept once for the whole cluster, node liveness, a dead node's sessions;
- ``link``: whether the node's link to Redis works, for ``/metrics`` and ``/healthz``;
- ``node``: builds the parts for ``ReferenceServer`` and owns their lifetime.
"""
