"""The scorer: the Tianjin credit measure as rules, and the pure engine that applies them."""
