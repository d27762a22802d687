"""A year's ratings as immutable snapshots: the model and reads (`snapshots`), computing and
publishing (`publishing`), proof that nothing was altered (`integrity`), dry runs (`dry_run`)."""
