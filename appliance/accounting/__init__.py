"""Money, limits and budgets: what a request may do and what it costs."""
