"""The edge of credit-rating: reading files, the command line (and later HTTP and storage)."""
