"""The province bridge: one process per province connecting its provincial platform to the
national services (docs/provincial-contract.md for the provincial side)."""
