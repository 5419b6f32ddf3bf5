"""Small helpers shared by the engine and tools: atomic files, distributed state,
seeding and RNG states, and where datasets and the cache live (`paths`)."""
