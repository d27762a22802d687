"""credit-rating's scorer: the Tianjin credit measure as rules, and a pure engine that applies them."""
