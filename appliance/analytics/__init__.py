"""Analytics and billing over the ledger: hourly rollups for whole hours, raw rows at the edges."""
