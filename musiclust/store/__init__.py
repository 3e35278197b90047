"""Where features live: the per-file cache, the sharded store, durable writes, and row-aligned tables."""
